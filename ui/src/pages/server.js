// The server: its config (edited as YAML with the ETag) and its resources.
import { html } from "../html.js";
import { ErrorBox, KeyValues, Page, bytes, useResource } from "../components/common.js";
import { lazy } from "../components/lazy.js";

const YamlEditor = lazy(() => import("../components/yaml_editor.js"), "YamlEditor");

export function Server({ server }) {
  const resources = useResource("/1.0/resources", { global: true });
  const r = resources.data;
  return html`<${Page} title="Server">
    <h2>Environment</h2>
    <${KeyValues} values=${{
      "Server name": server.environment?.server_name, Version: server.environment?.server_version,
      Kernel: `${server.environment?.kernel} ${server.environment?.kernel_version}`,
      Drivers: `${server.environment?.driver} ${server.environment?.driver_version}`,
      Clustered: server.environment?.server_clustered ? "yes" : "no",
    }} />
    <h2>Resources</h2>
    <${ErrorBox} error=${resources.error} />
    ${r && html`<${KeyValues} values=${{
      CPU: `${r.cpu?.total} threads, ${r.cpu?.sockets?.[0]?.name || ""}`,
      Memory: `${bytes(r.memory?.used)} used of ${bytes(r.memory?.total)}`,
      Disks: (r.storage?.disks || []).map((d) => `${d.id} ${bytes(d.size)}`).join(", "),
      "Network cards": (r.network?.cards || []).length,
    }} />`}
    <h2>Configuration</h2>
    <${YamlEditor} path="/1.0" fields=${["config"]} />
  </${Page}>`;
}
