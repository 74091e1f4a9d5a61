// Create an instance from a local image, with profiles, config and devices.
import { useState } from "preact/hooks";
import { call, wait } from "../api.js";
import { html } from "../html.js";
import { ErrorBox, Page, useResource } from "../components/common.js";

function imageLabel(image) {
  const alias = image.aliases?.[0]?.name;
  const what = image.properties?.description || image.properties?.os || "";
  return `${alias || image.fingerprint.slice(0, 12)} ${what ? "— " + what : ""} (${image.type})`;
}

export function CreateInstance() {
  const images = useResource("/1.0/images?recursion=1");
  const profiles = useResource("/1.0/profiles");
  const [form, setForm] = useState({ name: "", image: "", type: "", profiles: ["default"], config: "", devices: "", start: true });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.type === "checkbox" ? e.target.checked : e.target.value });
  const toggleProfile = (name) => (e) =>
    setForm({ ...form, profiles: e.target.checked ? [...form.profiles, name] : form.profiles.filter((p) => p !== name) });

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const YAML = (await import("yaml")).default;
      const parse = (label, text) => {
        try {
          return YAML.parse(text || "{}") || {};
        } catch (e) {
          throw new Error(`${label}: the YAML does not parse: ${e.message}`);
        }
      };
      const image = (images.data || []).find((i) => i.fingerprint === form.image);
      const body = {
        name: form.name.trim(),
        type: form.type || image?.type || "container",
        source: { type: "image", fingerprint: form.image },
        profiles: form.profiles,
        config: parse("Config", form.config),
        devices: parse("Devices", form.devices),
        start: form.start,
      };
      const answer = await call("POST", "/1.0/instances", body);
      if (answer.operation) await wait(answer.operation);
      location.hash = `#/instances/${encodeURIComponent(body.name)}`;
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const profileNames = (profiles.data || []).map((u) => decodeURIComponent(u.split("?")[0].split("/").pop()));
  return html`<${Page} title="Create instance">
    <form class="form" onSubmit=${submit}>
      <label>Name <input name="name" required value=${form.name} onInput=${set("name")} /></label>
      <label>Image
        <select name="image" required value=${form.image} onChange=${set("image")}>
          <option value="">Choose an image…</option>
          ${(images.data || []).map((i) => html`<option value=${i.fingerprint}>${imageLabel(i)}</option>`)}
        </select>
      </label>
      <label>Type
        <select name="type" value=${form.type} onChange=${set("type")}>
          <option value="">As the image</option>
          <option value="container">Container</option>
          <option value="virtual-machine">Virtual machine</option>
        </select>
      </label>
      <fieldset><legend>Profiles</legend>
        ${profileNames.map((p) => html`<label class="inline"><input type="checkbox" name=${"profile-" + p}
          checked=${form.profiles.includes(p)} onChange=${toggleProfile(p)} /> ${p}</label>`)}
      </fieldset>
      <label>Config (YAML) <textarea class="code" name="config" rows="4" placeholder="limits.memory: 256MiB" value=${form.config} onInput=${set("config")}></textarea></label>
      <label>Devices (YAML) <textarea class="code" name="devices" rows="4" placeholder=${"eth0:\n  type: nic\n  network: mybridge"} value=${form.devices} onInput=${set("devices")}></textarea></label>
      <label class="inline"><input type="checkbox" name="start" checked=${form.start} onChange=${set("start")} /> Start it</label>
      <div class="actions"><button type="submit" class="primary" disabled=${busy}>${busy ? "Creating…" : "Create"}</button>
        <a class="button" href="#/instances">Cancel</a></div>
    </form>
    <${ErrorBox} error=${error || images.error} />
  </${Page}>`;
}
