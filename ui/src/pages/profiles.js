// Profiles: the list, and each one edited as YAML with its ETag.
import { run } from "../api.js";
import { html } from "../html.js";
import { ActionButton, ErrorBox, Page, Table, useResource } from "../components/common.js";
import { lazy } from "../components/lazy.js";

const YamlEditor = lazy(() => import("../components/yaml_editor.js"), "YamlEditor");

const link = (name) => html`<a href=${"#/profiles/" + encodeURIComponent(name)}>${name}</a>`;

export function Profiles() {
  const { data, error, reload } = useResource("/1.0/profiles?recursion=1");
  const create = async () => {
    const name = prompt("Profile name");
    if (name) await run("POST", "/1.0/profiles", { name, config: {}, devices: {} });
  };
  const columns = [
    ["Name", (p) => link(p.name)],
    ["Description", (p) => p.description],
    ["Used by", (p) => (p.used_by || []).length],
  ];
  return html`<${Page} title="Profiles" actions=${html`<${ActionButton} label="Create profile" kind="primary" action=${create} onDone=${reload} />`}>
    <${ErrorBox} error=${error} />
    <${Table} columns=${columns} rows=${data} />
  </${Page}>`;
}

export function Profile({ params: [name] }) {
  const path = `/1.0/profiles/${encodeURIComponent(name)}`;
  const remove = () => (confirm(`Delete profile ${name}?`) ? run("DELETE", path).then(() => { location.hash = "#/profiles"; }) : Promise.resolve());
  return html`<${Page} title=${"Profile " + name} actions=${name !== "default" && html`<${ActionButton} label="Delete" kind="danger" action=${remove} />`}>
    <${YamlEditor} path=${path} fields=${["description", "config", "devices"]} />
  </${Page}>`;
}
