// Images: the list, import from a remote image server, aliases, delete.
import { useState } from "preact/hooks";
import { run } from "../api.js";
import { html } from "../html.js";
import { ActionButton, ErrorBox, Page, Table, bytes, date, useResource } from "../components/common.js";

function ImportForm({ onDone }) {
  const [form, setForm] = useState({ server: "https://images.linuxcontainers.org", protocol: "simplestreams", alias: "", local: "", certificate: "" });
  const [error, setError] = useState(null);
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  const submit = async () => {
    setError(null);
    const body = {
      source: {
        type: "image", mode: "pull", server: form.server, protocol: form.protocol, alias: form.alias,
        certificate: form.certificate.trim(),
      },
      aliases: form.local ? [{ name: form.local }] : [],
    };
    try {
      await run("POST", "/1.0/images", body);
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<div class="form inline-form">
    <label>Server <input name="server" value=${form.server} onInput=${set("server")} /></label>
    <label>Protocol <select name="protocol" value=${form.protocol} onChange=${set("protocol")}>
      <option>simplestreams</option><option>incus</option><option>oci</option></select></label>
    <label>Image <input name="alias" placeholder="debian/12" value=${form.alias} onInput=${set("alias")} /></label>
    <label>Local alias <input name="local" value=${form.local} onInput=${set("local")} /></label>
    <label>Server certificate (PEM, for a self-signed server)
      <textarea class="code" name="certificate" rows="2" value=${form.certificate} onInput=${set("certificate")}></textarea></label>
    <${ActionButton} label="Import" kind="primary" action=${submit} />
    <${ErrorBox} error=${error} />
  </div>`;
}

export function Images() {
  const { data, error, reload } = useResource("/1.0/images?recursion=1");
  const [importing, setImporting] = useState(false);
  const addAlias = (image) => async () => {
    const name = prompt("Alias");
    if (name) await run("POST", "/1.0/images/aliases", { name, target: image.fingerprint });
  };
  const remove = (image) => () =>
    confirm(`Delete image ${image.fingerprint.slice(0, 12)}?`) ? run("DELETE", `/1.0/images/${image.fingerprint}`) : Promise.resolve();
  const columns = [
    ["Aliases", (i) => (i.aliases || []).map((a) => a.name).join(", ")],
    ["Fingerprint", (i) => i.fingerprint.slice(0, 12)],
    ["Description", (i) => i.properties?.description || ""],
    ["Type", (i) => i.type],
    ["Size", (i) => bytes(i.size)],
    ["Uploaded", (i) => date(i.uploaded_at)],
    ["", (i) => html`<div class="row-actions"><${ActionButton} label="Add alias" action=${addAlias(i)} onDone=${reload} />
      <${ActionButton} label="Delete" kind="danger" action=${remove(i)} onDone=${reload} /></div>`],
  ];
  return html`<${Page} title="Images" actions=${html`<button onClick=${() => setImporting(!importing)}>Import from a remote</button>`}>
    ${importing && html`<${ImportForm} onDone=${() => { setImporting(false); reload(); }} />`}
    <${ErrorBox} error=${error} />
    <${Table} columns=${columns} rows=${data} rowKey=${(i) => i.fingerprint} empty="No images." />
  </${Page}>`;
}
