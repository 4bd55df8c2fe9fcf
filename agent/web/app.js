// The agent's web view: the physical heat map (/api/heat), a region's owners (/api/region) and
// the latency per layer (/api/observation). Plain DOM and canvas: the agent serves every byte.
"use strict";

const GRID = 16;     // 256 regions per device, as the agent cuts them
const CELL = 22;     // pixels
const COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
                 "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8"];
const LAYERS = ["export", "host", "device"];
const OPS = ["read", "write", "other"];

function colour(i) { return COLOURS[i % COLOURS.length]; }

function mix(hex, heat) {
  // Brightness by heat, never fully dark: an owned but cold region stays visible.
  const k = 0.25 + 0.75 * heat;
  const n = parseInt(hex.slice(1), 16);
  const c = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map(v => Math.round(v * k));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

async function getJson(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function drawHeat(heat) {
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  const owned = new Array(heat.vms.length).fill(0);
  for (const d of heat.devices) d.owner.forEach(o => { if (o >= 0) owned[o]++; });
  heat.vms.forEach((vm, i) => {
    const li = document.createElement("li");
    li.style.setProperty("--c", colour(i));
    li.dataset.vm = vm;
    li.dataset.regions = owned[i];
    li.textContent = `${vm} (${owned[i]} regions)`;
    legend.appendChild(li);
  });
  const box = document.getElementById("devices");
  box.replaceChildren();
  let total = 0;
  for (const d of heat.devices) {
    const div = document.createElement("div");
    div.className = "device";
    div.dataset.device = d.device;
    const mib = (d.sectors * 512 / 1048576).toFixed(0);
    const h = document.createElement("h3");
    h.textContent = `${d.name || "?"} (${d.device}), ${mib} MiB, ` +
        `${(d.region_sectors * 512 / 1048576).toFixed(2)} MiB per region`;
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = GRID * CELL;
    const g = canvas.getContext("2d");
    let count = 0;
    d.owner.forEach((o, r) => {
      const x = (r % GRID) * CELL, y = Math.floor(r / GRID) * CELL;
      g.fillStyle = o < 0 ? "#222" : mix(colour(o), d.heat[r]);
      g.fillRect(x + 1, y + 1, CELL - 2, CELL - 2);
      if (o >= 0) count++;
    });
    div.dataset.ownedRegions = count;
    total += count;
    canvas.addEventListener("click", ev => {
      const rect = canvas.getBoundingClientRect();
      const r = Math.floor((ev.clientY - rect.top) / CELL) * GRID +
                Math.floor((ev.clientX - rect.left) / CELL);
      showRegion(d.device, r);
    });
    div.append(h, canvas);
    box.appendChild(div);
  }
  box.dataset.ownedRegions = total;
}

async function showRegion(device, region) {
  const out = document.getElementById("region-detail");
  const r = await getJson(`/api/region?device=${encodeURIComponent(device)}&region=${region}`);
  out.replaceChildren();
  out.dataset.device = r.device;
  out.dataset.region = r.region;
  out.dataset.owners = r.owners.length;
  const p = document.createElement("p");
  p.textContent = `${r.device} region ${r.region}: sectors ${r.sector_begin}..${r.sector_end}, ` +
      `${r.owners.length}${r.truncated ? "+" : ""} owner extents`;
  out.appendChild(p);
  const t = document.createElement("table");
  t.innerHTML = "<thead><tr><th>VM</th><th>vdisk</th><th>voffset</th><th>bytes</th>" +
      "<th>sector</th></tr></thead>";
  const body = document.createElement("tbody");
  for (const o of r.owners) {
    const tr = document.createElement("tr");
    tr.className = "owner";
    for (const v of [o.vm, o.vdisk, "0x" + o.voffset.toString(16), o.length, o.sector]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  t.appendChild(body);
  out.appendChild(t);
}

// The q-quantile of a histogram in the agent's layout (bucket b: [2^b, 2^(b+1)) µs), seconds.
function quantile(buckets, q) {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let b = 0; b < buckets.length; b++) {
    if (buckets[b] === 0) continue;
    if (below + buckets[b] >= rank) {
      const lo = b === 0 ? 0 : 2 ** b * 1e-6, hi = 2 ** (b + 1) * 1e-6;
      return lo + (hi - lo) * Math.max(0, (rank - below) / buckets[b]);
    }
    below += buckets[b];
  }
  return 2 ** buckets.length * 1e-6;
}

function fmtTime(s) {
  if (s === null) return "-";
  if (s < 1e-3) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1e3).toFixed(2)} ms`;
  return `${s.toFixed(2)} s`;
}

function merged(list) {
  const out = [];
  for (const b of list) b.forEach((n, i) => { out[i] = (out[i] || 0) + n; });
  return Array.from(out, v => v || 0);
}

function drawLatency(obs) {
  const devices = new Map(obs.devices.map(d => [d.device, d]));
  const body = document.querySelector("#latency-table tbody");
  body.replaceChildren();
  for (const v of obs.vdisks) {
    for (const op of OPS) {
      const ex = v.layers.export[op], host = v.layers.host[op];
      // The device layer is per device (the kernel cannot name the VM at completion): the
      // devices under this vdisk, merged.
      const devs = v.devices.map(d => devices.get(d)).filter(d => d && d.layers.device[op]);
      if (!ex && !host) continue;
      const cells = {
        export: ex ? ex.buckets : [],
        host: host ? host.buckets : [],
        device: merged(devs.map(d => d.layers.device[op].buckets)),
      };
      const tr = document.createElement("tr");
      tr.dataset.vm = v.vm;
      tr.dataset.layers = LAYERS.filter(l => quantile(cells[l], 0.5) !== null).join(" ");
      const add = t => { const td = document.createElement("td"); td.textContent = t; tr.appendChild(td); return td; };
      add(v.vm); add(v.vdisk); add(op); add(ex ? ex.requests : host.requests);
      const p50 = {};
      for (const l of LAYERS) {
        p50[l] = quantile(cells[l], 0.5);
        add(`${fmtTime(p50[l])} / ${fmtTime(quantile(cells[l], 0.99))}`);
      }
      const bars = add("");
      const top = Math.max(...LAYERS.map(l => p50[l] || 0), 1e-9);
      for (const l of LAYERS) {
        const s = document.createElement("span");
        s.className = `bar ${l}`;
        s.title = `${l} p50`;
        s.style.width = `${Math.round(120 * (p50[l] || 0) / top)}px`;
        bars.appendChild(s);
      }
      body.appendChild(tr);
    }
  }
}

async function refresh() {
  try {
    const [heat, obs] = await Promise.all([getJson("/api/heat"), getJson("/api/observation")]);
    drawHeat(heat);
    drawLatency(obs);
    document.body.dataset.state = "ready";
    document.body.dataset.vms = heat.vms.join(" ");
    // ?select=first: show the first owned region (what the tests and a demo screenshot use).
    const sel = new URLSearchParams(location.search).get("select");
    if (sel === "first" && !document.getElementById("region-detail").dataset.region) {
      for (const d of heat.devices) {
        const r = d.owner.findIndex(o => o >= 0);
        if (r >= 0) { await showRegion(d.device, r); break; }
      }
    }
  } catch (e) {
    document.body.dataset.state = "error";
    document.getElementById("region-detail").textContent = String(e);
  }
  setTimeout(refresh, 2000);
}

refresh();
