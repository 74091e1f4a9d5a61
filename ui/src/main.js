// The application: who the browser is (GET /1.0), then the pages, routed by the URL's hash.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "@xterm/xterm/css/xterm.css";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { get, currentProject, prefetch, setProject } from "./api.js";
import { html } from "./html.js";
import { Enrol } from "./pages/enrol.js";
import { Instances } from "./pages/instances.js";
import { Instance } from "./pages/instance.js";
import { CreateInstance } from "./pages/create_instance.js";
import { Images } from "./pages/images.js";
import { Profiles, Profile } from "./pages/profiles.js";
import { Projects, Project } from "./pages/projects.js";
import { Storage } from "./pages/storage.js";
import { Networks, Network } from "./pages/networks.js";
import { Operations } from "./pages/operations.js";
import { Warnings } from "./pages/warnings.js";
import { Server } from "./pages/server.js";
import { ErrorBox } from "./components/common.js";

const ROUTES = [
  [/^instances$/, Instances],
  [/^instances\/new$/, CreateInstance],
  [/^instances\/([^/]+)(?:\/([a-z]+))?$/, Instance],
  [/^images$/, Images],
  [/^profiles$/, Profiles],
  [/^profiles\/([^/]+)$/, Profile],
  [/^projects$/, Projects],
  [/^projects\/([^/]+)$/, Project],
  [/^storage$/, Storage],
  [/^networks$/, Networks],
  [/^networks\/([^/]+)$/, Network],
  [/^operations$/, Operations],
  [/^warnings$/, Warnings],
  [/^server$/, Server],
];

const NAV = [
  ["instances", "Instances"],
  ["images", "Images"],
  ["profiles", "Profiles"],
  ["projects", "Projects"],
  ["storage", "Storage"],
  ["networks", "Networks"],
  ["operations", "Operations"],
  ["warnings", "Warnings"],
  ["server", "Server"],
];

function route() {
  return location.hash.replace(/^#\/?/, "") || "instances";
}

function useRoute() {
  const [current, setCurrent] = useState(route());
  useEffect(() => {
    const changed = () => setCurrent(route());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return current;
}

function ProjectPicker({ projects, onChange }) {
  return html`<label class="project-picker">Project
    <select value=${currentProject()} onChange=${(e) => onChange(e.target.value)}>
      ${projects.map((p) => html`<option value=${p}>${p}</option>`)}
    </select></label>`;
}

function Shell({ server }) {
  const path = useRoute();
  const [projects, setProjects] = useState([currentProject()]);
  const [, setVersion] = useState(0);
  useEffect(() => {
    get("/1.0/projects", { global: true })
      .then((urls) => {
        const names = urls.map((u) => decodeURIComponent(u.split("/").pop()));
        setProjects(names);
        if (!names.includes(currentProject()) && names.length) {
          setProject(names[0]);
          setVersion((v) => v + 1);
        }
      })
      .catch(() => {});
  }, []);
  let page = null;
  for (const [pattern, Page] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      page = html`<${Page} key=${path + currentProject()} params=${match.slice(1).map((p) => p && decodeURIComponent(p))} server=${server} />`;
      break;
    }
  }
  const section = path.split("/")[0];
  return html`<div class="shell">
    <nav class="sidebar">
      <div class="brand">Stapes</div>
      <${ProjectPicker} projects=${projects} onChange=${(name) => { setProject(name); setVersion((v) => v + 1); }} />
      ${NAV.map(([id, label]) => html`<a href=${"#/" + id} class=${section === id ? "active" : ""}>${label}</a>`)}
      <div class="who">${server.auth_user_name || ""}<br />${server.environment?.server_name || ""}
        ${server.auth_user_method === "oidc" && html`<br /><a href="/oidc/logout">Log out</a>`}</div>
    </nav>
    <main>${page || html`<${ErrorBox} error=${{ message: `No page ${path}` }} />`}</main>
  </div>`;
}

function App() {
  const [server, setServer] = useState(null);
  const [error, setError] = useState(null);
  const load = () =>
    get("/1.0", { global: true })
      .then(setServer)
      .catch(setError);
  useEffect(() => { load(); }, []);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!server) return html`<p class="loading">Loading…</p>`;
  if (server.auth !== "trusted") return html`<${Enrol} server=${server} onEnrolled=${load} />`;
  return html`<${Shell} server=${server} />`;
}

// The instance list (the first page) asks for this as soon as it renders: asked now, beside
// GET /1.0, it is there sooner.
if (route() === "instances") prefetch("/1.0/instances?recursion=2");
render(html`<${App} />`, document.getElementById("app"));
