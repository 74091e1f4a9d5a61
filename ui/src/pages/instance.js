// One instance: overview and power actions, snapshots, terminal, consoles, files, its config.
import { useState } from "preact/hooks";
import { run } from "../api.js";
import { html } from "../html.js";
import {
  ActionButton, ErrorBox, KeyValues, Page, Status, Table, bytes, date, useResource,
} from "../components/common.js";
import { lazy } from "../components/lazy.js";
import { Files } from "../components/files.js";
import { addresses, instanceAction } from "./instances.js";

const Terminal = lazy(() => import("../components/terminal.js"), "Terminal");
const VgaConsole = lazy(() => import("../components/vga.js"), "VgaConsole");
const YamlEditor = lazy(() => import("../components/yaml_editor.js"), "YamlEditor");
const Graphs = lazy(() => import("../components/graphs.js"), "Graphs");

const TABS = [
  ["overview", "Overview"],
  ["snapshots", "Snapshots"],
  ["terminal", "Terminal"],
  ["console", "Console"],
  ["files", "Files"],
  ["graphs", "Graphs"],
  ["configuration", "Configuration"],
];

function Overview({ instance, reload }) {
  const name = instance.name;
  const state = instance.state || {};
  const act = (action) => () => instanceAction(name, action);
  const running = instance.status === "Running";
  const frozen = instance.status === "Frozen";
  const rename = async () => {
    const to = prompt("New name", name);
    if (!to || to === name) return;
    await run("POST", `/1.0/instances/${encodeURIComponent(name)}`, { name: to });
    location.hash = `#/instances/${encodeURIComponent(to)}`;
  };
  return html`<div>
    <div class="actions">
      ${!running && !frozen && html`<${ActionButton} label="Start" kind="primary" action=${act("start")} onDone=${reload} />`}
      ${running && html`<${ActionButton} label="Stop" action=${act("stop")} onDone=${reload} />`}
      ${running && html`<${ActionButton} label="Restart" action=${act("restart")} onDone=${reload} />`}
      ${running && html`<${ActionButton} label="Freeze" action=${act("freeze")} onDone=${reload} />`}
      ${frozen && html`<${ActionButton} label="Unfreeze" action=${act("unfreeze")} onDone=${reload} />`}
      ${!running && !frozen && html`<${ActionButton} label="Rename" action=${rename} />`}
      ${!running && !frozen && html`<${ActionButton} label="Delete" kind="danger"
        action=${() => (confirm(`Delete ${name}?`) ? instanceAction(name, "delete").then(() => { location.hash = "#/instances"; }) : Promise.resolve())} />`}
    </div>
    <dl class="kv">
      <dt>Status</dt><dd><${Status} status=${instance.status} /></dd>
      <dt>Type</dt><dd>${instance.type}</dd>
      <dt>Architecture</dt><dd>${instance.architecture}</dd>
      ${instance.location && instance.location !== "none" && html`<dt>Location</dt><dd>${instance.location}</dd>`}
      <dt>Description</dt><dd>${instance.description || ""}</dd>
      <dt>Created</dt><dd>${date(instance.created_at)}</dd>
      <dt>Last used</dt><dd>${date(instance.last_used_at)}</dd>
      <dt>Profiles</dt><dd>${(instance.profiles || []).join(", ")}</dd>
      <dt>IPv4</dt><dd class="addresses">${addresses(state).join(", ")}</dd>
      <dt>IPv6</dt><dd>${addresses(state, "inet6").join(", ")}</dd>
      <dt>PID</dt><dd>${state.pid || ""}</dd>
      <dt>Processes</dt><dd>${state.processes ?? ""}</dd>
      <dt>Memory</dt><dd>${running ? bytes(state.memory?.usage) : ""}</dd>
      <dt>Disk</dt><dd>${Object.entries(state.disk || {}).map(([d, u]) => `${d}: ${bytes(u.usage)}`).join(", ")}</dd>
    </dl>
    <h2>Devices</h2>
    <${KeyValues} values=${instance.expanded_devices} />
  </div>`;
}

function Snapshots({ name }) {
  const base = `/1.0/instances/${encodeURIComponent(name)}/snapshots`;
  const { data, error, reload } = useResource(`${base}?recursion=1`);
  const [failure, setFailure] = useState(null);
  const create = async () => {
    const snapshot = prompt("Snapshot name (empty: the next free snapN)", "");
    if (snapshot === null) return;
    await run("POST", base, snapshot ? { name: snapshot } : {});
  };
  const restore = (snapshot) => () =>
    confirm(`Restore ${name} to ${snapshot}?`)
      ? run("PUT", `/1.0/instances/${encodeURIComponent(name)}`, { restore: snapshot })
      : Promise.resolve();
  const remove = (snapshot) => () =>
    confirm(`Delete snapshot ${snapshot}?`) ? run("DELETE", `${base}/${encodeURIComponent(snapshot)}`) : Promise.resolve();
  const columns = [
    ["Name", (s) => s.name],
    ["Taken", (s) => date(s.created_at)],
    ["Expires", (s) => date(s.expires_at)],
    ["Stateful", (s) => (s.stateful ? "yes" : "no")],
    ["", (s) => html`<div class="row-actions">
      <${ActionButton} label="Restore" action=${restore(s.name)} onDone=${reload} onError=${setFailure} />
      <${ActionButton} label="Delete" kind="danger" action=${remove(s.name)} onDone=${reload} onError=${setFailure} /></div>`],
  ];
  return html`<div>
    <div class="actions"><${ActionButton} label="Take snapshot" kind="primary" action=${create} onDone=${reload} onError=${setFailure} /></div>
    <${ErrorBox} error=${failure || error} />
    <${Table} columns=${columns} rows=${data} empty="No snapshots." />
  </div>`;
}

function Console({ instance }) {
  const name = encodeURIComponent(instance.name);
  const [kind, setKind] = useState("console");
  if (instance.status !== "Running") return html`<p class="empty">The console is there while the instance runs.</p>`;
  const vm = instance.type === "virtual-machine";
  return html`<div>
    ${vm && html`<div class="actions">
      <button class=${kind === "console" ? "primary" : ""} onClick=${() => setKind("console")}>Text console</button>
      <button class=${kind === "vga" ? "primary" : ""} onClick=${() => setKind("vga")}>Screen (VGA)</button></div>`}
    ${kind === "vga"
      ? html`<${VgaConsole} instance=${instance.name} />`
      : html`<${Terminal} label="console" start=${(width, height) => [`/1.0/instances/${name}/console`, { type: "console", width, height }]} />`}
  </div>`;
}

function Shell({ instance }) {
  if (instance.status !== "Running") return html`<p class="empty">Start the instance to open a terminal in it.</p>`;
  const name = encodeURIComponent(instance.name);
  return html`<${Terminal} label="shell" start=${(width, height) => [`/1.0/instances/${name}/exec`, {
    command: ["/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l"],
    environment: { TERM: "xterm-256color", HOME: "/root" },
    interactive: true, "wait-for-websocket": true, width, height,
  }]} />`;
}

export function Instance({ params: [name, tab = "overview"] }) {
  const path = `/1.0/instances/${encodeURIComponent(name)}?recursion=1`;
  const { data, error, reload } = useResource(path, { every: 5000 });
  let body = null;
  if (data) {
    const instance = data;
    body = {
      overview: html`<${Overview} instance=${instance} reload=${reload} />`,
      snapshots: html`<${Snapshots} name=${name} />`,
      terminal: html`<${Shell} instance=${data} />`,
      console: html`<${Console} instance=${data} />`,
      files: html`<${Files} instance=${name} />`,
      graphs: html`<${Graphs} instance=${name} />`,
      configuration: html`<${YamlEditor} path=${`/1.0/instances/${encodeURIComponent(name)}`}
        fields=${["description", "profiles", "config", "devices", "ephemeral", "architecture"]} onSaved=${reload} />`,
    }[tab];
  }
  return html`<${Page} title=${name} actions=${data && html`<${Status} status=${data.status} />`}>
    <nav class="tabs">${TABS.map(([id, label]) => html`<a class=${tab === id ? "active" : ""}
      href=${`#/instances/${encodeURIComponent(name)}/${id}`}>${label}</a>`)}</nav>
    <${ErrorBox} error=${error} />
    ${body}
  </${Page}>`;
}
