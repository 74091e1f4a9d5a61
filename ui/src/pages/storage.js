// Storage pools with their usage, and each pool's volumes.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { ErrorBox, Page, Table, UsageBar, useResource } from "../components/common.js";

function PoolUsage({ pool }) {
  const { data } = useResource(`/1.0/storage-pools/${encodeURIComponent(pool)}/resources`);
  if (!data) return "";
  return html`<${UsageBar} used=${data.space?.used || 0} total=${data.space?.total || 0} />`;
}

function Volumes({ pool }) {
  const { data, error } = useResource(`/1.0/storage-pools/${encodeURIComponent(pool)}/volumes?recursion=1`);
  const columns = [
    ["Name", (v) => v.name],
    ["Type", (v) => v.type],
    ["Content", (v) => v.content_type],
    ["Size", (v) => v.config?.size || ""],
    ["Used by", (v) => (v.used_by || []).length],
  ];
  return html`<${ErrorBox} error=${error} /><${Table} columns=${columns} rows=${data} rowKey=${(v) => v.type + "/" + v.name} empty="No volumes." />`;
}

export function Storage() {
  const { data, error } = useResource("/1.0/storage-pools?recursion=1");
  const [open, setOpen] = useState(null);
  const columns = [
    ["Name", (p) => html`<button class="link" onClick=${() => setOpen(open === p.name ? null : p.name)}>${p.name}</button>`],
    ["Driver", (p) => p.driver],
    ["Source", (p) => p.config?.source || ""],
    ["Usage", (p) => html`<${PoolUsage} pool=${p.name} />`],
    ["Used by", (p) => (p.used_by || []).length],
    ["Status", (p) => p.status],
  ];
  return html`<${Page} title="Storage">
    <${ErrorBox} error=${error} />
    <${Table} columns=${columns} rows=${data} />
    ${open && html`<h2>Volumes of ${open}</h2><${Volumes} pool=${open} />`}
  </${Page}>`;
}
