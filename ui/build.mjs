// Builds the web UI into dist/: one bundle of the application and its libraries, its styles,
// and index.html. stapesd serves dist/ at /ui/ (scripts/setup-host.sh runs this build).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const out = new URL("./dist/", import.meta.url);
await rm(out, { recursive: true, force: true });
await mkdir(new URL("assets/", out), { recursive: true });
await build({
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
});
await copyFile(new URL("./src/index.html", import.meta.url), new URL("index.html", out));
