// Edit an API object as YAML and PUT it back with its ETag: a change made elsewhere in the
// meantime is a conflict (412) the user sees, never a silent overwrite.
import { useEffect, useState } from "preact/hooks";
import YAML from "yaml";
import { call } from "../api.js";
import { html } from "../html.js";
import { ErrorBox } from "./common.js";

/** ``fields``: the writable fields PUT takes (the rest of the object is shown, not sent). */
export function YamlEditor({ path, fields, onSaved }) {
  const [text, setText] = useState("");
  const [etag, setEtag] = useState(null);
  const [error, setError] = useState(null);
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState(false);

  const load = async () => {
    const { metadata, etag: tag } = await call("GET", path);
    const writable = Object.fromEntries(fields.map((f) => [f, metadata[f]]));
    setText(YAML.stringify(writable));
    setEtag(tag);
    setError(null);
  };
  useEffect(() => { load().catch(setError); }, [path]);

  const save = async () => {
    setBusy(true);
    setMessage("");
    try {
      let body;
      try {
        body = YAML.parse(text) || {};
      } catch (e) {
        throw new Error(`The YAML does not parse: ${e.message}`);
      }
      await call("PUT", path, body, { etag });
      await load();
      setMessage("Saved.");
      onSaved?.();
    } catch (e) {
      if (e.status === 412) {
        e.message = `Conflict: it was changed elsewhere since you opened it (${e.message}). Reload to see the current version; your text is kept until then.`;
        e.conflict = true;
      }
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return html`<div class="yaml-editor">
    <textarea class="code" spellcheck="false" rows="18" value=${text} onInput=${(e) => setText(e.target.value)}></textarea>
    <div class="actions">
      <button class="primary" onClick=${save} disabled=${busy}>${busy ? "Saving…" : "Save"}</button>
      <button onClick=${() => load().then(() => setMessage("Reloaded.")).catch(setError)}>Reload</button>
      <span class="note">${message}</span>
    </div>
    <${ErrorBox} error=${error} />
  </div>`;
}
