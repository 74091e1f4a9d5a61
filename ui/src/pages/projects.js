// Projects: the list, and each one's config edited as YAML with its ETag.
import { run, setProject } from "../api.js";
import { html } from "../html.js";
import { ActionButton, ErrorBox, Page, Table, useResource } from "../components/common.js";
import { lazy } from "../components/lazy.js";

const YamlEditor = lazy(() => import("../components/yaml_editor.js"), "YamlEditor");

export function Projects() {
  const { data, error, reload } = useResource("/1.0/projects?recursion=1", { global: true });
  const create = async () => {
    const name = prompt("Project name");
    if (name) await run("POST", "/1.0/projects", { name, config: {} }, { global: true });
  };
  const columns = [
    ["Name", (p) => html`<a href=${"#/projects/" + encodeURIComponent(p.name)}>${p.name}</a>`],
    ["Description", (p) => p.description],
    ["Images", (p) => p.config?.["features.images"] || ""],
    ["Profiles", (p) => p.config?.["features.profiles"] || ""],
    ["Used by", (p) => (p.used_by || []).length],
    ["", (p) => html`<button onClick=${() => { setProject(p.name); location.hash = "#/instances"; location.reload(); }}>Use</button>`],
  ];
  return html`<${Page} title="Projects" actions=${html`<${ActionButton} label="Create project" kind="primary" action=${create} onDone=${reload} />`}>
    <${ErrorBox} error=${error} />
    <${Table} columns=${columns} rows=${data} />
  </${Page}>`;
}

export function Project({ params: [name] }) {
  return html`<${Page} title=${"Project " + name}>
    <${YamlEditor} path=${`/1.0/projects/${encodeURIComponent(name)}`} fields=${["description", "config"]} />
  </${Page}>`;
}
