// Networks: the list; each managed one with its leases, forwards and ACLs.
import { html } from "../html.js";
import { ErrorBox, KeyValues, Page, Table, useResource } from "../components/common.js";

export function Networks() {
  const { data, error } = useResource("/1.0/networks?recursion=1");
  const columns = [
    ["Name", (n) => (n.managed ? html`<a href=${"#/networks/" + encodeURIComponent(n.name)}>${n.name}</a>` : n.name)],
    ["Type", (n) => n.type],
    ["Managed", (n) => (n.managed ? "yes" : "no")],
    ["IPv4", (n) => n.config?.["ipv4.address"] || ""],
    ["IPv6", (n) => n.config?.["ipv6.address"] || ""],
    ["Used by", (n) => (n.used_by || []).length],
    ["State", (n) => n.status || ""],
  ];
  return html`<${Page} title="Networks">
    <${ErrorBox} error=${error} />
    <${Table} columns=${columns} rows=${data} />
  </${Page}>`;
}

export function Network({ params: [name] }) {
  const base = `/1.0/networks/${encodeURIComponent(name)}`;
  const network = useResource(base);
  const leases = useResource(`${base}/leases`);
  const forwards = useResource(`${base}/forwards?recursion=1`);
  const acls = useResource("/1.0/network-acls?recursion=1");
  const used = new Set((network.data?.config?.["security.acls"] || "").split(",").filter(Boolean));
  return html`<${Page} title=${"Network " + name}>
    <${ErrorBox} error=${network.error} />
    <h2>Configuration</h2><${KeyValues} values=${network.data?.config} />
    <h2>Leases</h2>
    <${Table} rows=${leases.data} rowKey=${(l) => l.hwaddr + l.address} empty="No leases." columns=${[
      ["Hostname", (l) => l.hostname], ["Address", (l) => l.address], ["MAC", (l) => l.hwaddr], ["Type", (l) => l.type],
    ]} />
    <h2>Forwards</h2>
    <${Table} rows=${forwards.data} rowKey=${(f) => f.listen_address} empty="No forwards." columns=${[
      ["Listen address", (f) => f.listen_address], ["Default target", (f) => f.config?.target_address || ""],
      ["Ports", (f) => (f.ports || []).map((p) => `${p.protocol}/${p.listen_port} → ${p.target_address}${p.target_port ? ":" + p.target_port : ""}`).join(", ")],
    ]} />
    <h2>ACLs</h2>
    <${Table} rows=${(acls.data || []).filter((a) => used.has(a.name))} empty="No ACLs on this network." columns=${[
      ["Name", (a) => a.name], ["Ingress rules", (a) => (a.ingress || []).length], ["Egress rules", (a) => (a.egress || []).length],
    ]} />
  </${Page}>`;
}
