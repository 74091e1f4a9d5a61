// Builds the web UI into dist/: one bundle of the application and its libraries, its styles,
// and index.html. stapesd serves dist/ at /ui/ (scripts/setup-host.sh runs this build).
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";

const out = new URL("./dist/", import.meta.url);
await rm(out, { recursive: true, force: true });
await mkdir(new URL("assets/", out), { recursive: true });
const result = await build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  splitting: true, // the terminal, the VNC client, the charts and YAML load when a page needs them
  format: "esm",
  chunkNames: "chunks/[name]-[hash]",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outdir: "dist/assets",
  loader: { ".woff": "file", ".woff2": "file", ".svg": "file" },
  logLevel: "warning",
  metafile: true,
});
// The chunks app.js imports at once are named in index.html, so the browser fetches them
// beside app.js instead of after it.
const preload = result.metafile.outputs["dist/assets/app.js"].imports
  .filter((i) => i.kind === "import-statement")
  .map((i) => `  <link rel="modulepreload" href="/ui/${i.path.replace(/^dist\//, "")}">`)
  .join("\n");
const index = await readFile(new URL("./src/index.html", import.meta.url), "utf8");
await writeFile(new URL("index.html", out), index.replace("  <!-- modulepreload -->", preload));
