// Browse an instance's files through the files API: directories listed, files downloaded,
// uploads pushed into the directory shown.
import { useEffect, useState } from "preact/hooks";
import { ApiError, url } from "../api.js";
import { html } from "../html.js";
import { ErrorBox } from "./common.js";

function filesUrl(instance, path) {
  return url(`/1.0/instances/${encodeURIComponent(instance)}/files?path=${encodeURIComponent(path)}`);
}

async function failure(response) {
  try {
    const envelope = await response.json();
    return new ApiError(response.status, envelope.error || response.statusText);
  } catch {
    return new ApiError(response.status, response.statusText);
  }
}

const join = (dir, name) => (dir.endsWith("/") ? dir + name : `${dir}/${name}`);
const parent = (dir) => dir.replace(/\/[^/]+\/?$/, "") || "/";

export function Files({ instance }) {
  const [dir, setDir] = useState("/");
  const [entries, setEntries] = useState(null);
  const [error, setError] = useState(null);
  const [note, setNote] = useState("");

  const list = async (path) => {
    const response = await fetch(filesUrl(instance, path));
    if (!response.ok) throw await failure(response);
    if (response.headers.get("X-Incus-Type") !== "directory") {
      await download(path, response);
      return;
    }
    const envelope = await response.json();
    setEntries([...envelope.metadata].sort());
    setDir(path);
  };
  const download = async (path, response) => {
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = path.split("/").pop();
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  };
  useEffect(() => { list("/").catch(setError); }, [instance]);

  const open = (name) => () => { setError(null); list(join(dir, name)).catch(setError); };
  const upload = async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const target = join(dir, file.name);
    const response = await fetch(filesUrl(instance, target), {
      method: "POST",
      headers: { "X-Incus-Type": "file", "X-Incus-Write": "overwrite", "Content-Type": "application/octet-stream" },
      body: file,
    });
    event.target.value = "";
    if (!response.ok) throw await failure(response);
    setNote(`Uploaded ${target}.`);
    await list(dir);
  };
  return html`<div class="files">
    <div class="actions">
      <span class="path">${dir}</span>
      ${dir !== "/" && html`<button onClick=${() => list(parent(dir)).catch(setError)}>Up</button>`}
      <label class="button">Upload here<input type="file" hidden onChange=${(e) => upload(e).catch(setError)} /></label>
      <span class="note">${note}</span>
    </div>
    <${ErrorBox} error=${error} />
    <ul class="file-list">${(entries || []).map((name) => html`<li><button class="link" onClick=${open(name)}>${name}</button></li>`)}</ul>
  </div>`;
}
