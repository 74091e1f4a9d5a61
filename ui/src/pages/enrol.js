// What an untrusted browser sees: how to enrol its certificate with a trust token, nothing else.
import { useState } from "preact/hooks";
import { call } from "../api.js";
import { html } from "../html.js";
import { ErrorBox } from "../components/common.js";

export function Enrol({ server, onEnrolled }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const hasCertificate = server.auth !== "untrusted" || location.protocol === "https:";
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await call("POST", "/1.0/certificates", { type: "client", trust_token: token.trim() }, { global: true });
      onEnrolled();
    } catch (e) {
      setError(new Error(`The server refused the token: ${e.message}`));
    } finally {
      setBusy(false);
    }
  };
  return html`<section class="enrol">
    <h1>Stapes</h1>
    <p>This browser is not trusted by the server yet. The UI uses the server's API with this
      browser's TLS client certificate, exactly as the <code>stapes</code> and${" "}
      <code>incus</code> clients do.</p>
    <ol>
      <li>Import a client certificate into this browser, for example one made with${" "}
        <code>openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes -days 3650
        -subj /CN=browser -keyout browser.key -out browser.crt</code> and bundled with${" "}
        <code>openssl pkcs12 -export -inkey browser.key -in browser.crt -out browser.pfx</code>;
        then reload this page and pick it when the browser asks.</li>
      <li>On the server, make a trust token: <code>stapes config trust add browser</code>${" "}
        (or <code>incus config trust add browser</code>).</li>
      <li>Paste the token here.</li>
    </ol>
    ${(server.auth_methods || []).includes("oidc") && html`<p class="oidc">Or log in with your
      identity provider: <a class="button primary" href="/oidc/login">Log in with OIDC</a></p>`}
    ${!hasCertificate && html`<p class="error">This page was not opened over HTTPS: no certificate can be sent.</p>`}
    <form onSubmit=${submit}>
      <label>Trust token <textarea name="token" rows="3" value=${token} onInput=${(e) => setToken(e.target.value)}></textarea></label>
      <button type="submit" disabled=${busy || !token.trim()}>${busy ? "Enrolling…" : "Enrol this browser"}</button>
    </form>
    <${ErrorBox} error=${error} />
  </section>`;
}
