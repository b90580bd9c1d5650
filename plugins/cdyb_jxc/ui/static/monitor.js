// 医保上传监控: reads the monitor's API (this app) and, for 补传, Airflow's own REST API as the logged-in user.
"use strict";

const STATE_LABELS = {PENDING: "待发送", IN_FLIGHT: "发送中", ACCEPTED: "已接收", ACCEPTED_RECONCILED: "对账接收",
  REJECTED: "被拒", IN_DOUBT: "待确认", DUPLICATE_CONFLICT: "重复冲突"};
const BALANCE_LABELS = {ok: "平衡", imbalance: "不平衡", source_imbalance: "HIS 不平衡", unchecked: "未能核对", none: ""};
const RUN_LABELS = {queued: "排队中", running: "运行中", success: "成功", failed: "失败"};
const PAGE = 50;
const DAYS = 90;
const ui = {institution: "", institutions: [], names: {}, labels: {}, columns: [], offset: 0, charts: []};

const $ = (id) => document.getElementById(id);
const esc = (v) => (v === null || v === undefined ? "" : String(v)).replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const pct = (v) => (v === null || v === undefined ? "—" : (v * 100).toFixed(1) + "%");
const txnName = (code) => `${ui.names[code] || ""} ${code}`.trim();

function dark() {
  const chosen = new URLSearchParams(location.search).get("theme") || localStorage.getItem("theme");
  if (chosen === "dark" || chosen === "light") return chosen === "dark";
  return window.matchMedia("(prefers-color-scheme: dark)").matches;  // Airflow's "system"
}
function applyTheme() { document.documentElement.dataset.theme = dark() ? "dark" : "light"; }

function withScope(path, params = {}) {
  const p = new URLSearchParams(params);
  if (ui.institution) p.set("institution", ui.institution);
  const q = p.toString();
  return path + (q ? (path.includes("?") ? "&" : "?") + q : "");
}
async function api(path, params) {
  const resp = await fetch(withScope(path, params), {credentials: "same-origin"});
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.detail || ("HTTP " + resp.status));
  return body;
}
function fail(err) { const b = $("banner"); b.className = "banner error"; b.textContent = "⚠ " + err.message; }
function clearBanner() { const b = $("banner"); b.className = "banner"; b.textContent = ""; }
function rows(tableId, html) { document.querySelector("#" + tableId + " tbody").innerHTML = html.join(""); }
const td = (v, cls) => `<td${cls ? ` class="${esc(cls)}"` : ""}>${esc(v)}</td>`;

async function loadInstitutions() {
  ui.institutions = (await api("api/institutions")).institutions;
  const sel = $("institution");
  ui.institutions.forEach((i) => sel.add(new Option(`${i.name || i.code} ${i.code}`, i.code)));
  const wanted = new URLSearchParams(location.search).get("institution");
  if (ui.institutions.length === 1) ui.institution = ui.institutions[0].code;
  else if (wanted && ui.institutions.some((i) => i.code === wanted)) ui.institution = wanted;
  sel.value = ui.institution;
}
function chosenInstitution() { return ui.institutions.find((i) => i.code === ui.institution) || null; }

async function loadSummary() {
  const s = await api("api/summary");
  const cards = Object.entries(s.states).map(([k, v]) =>
    `<div class="card">${esc(STATE_LABELS[k] || k)} <span class="muted">${esc(k)}</span><b>${v}</b></div>`);
  cards.push(`<div class="card" id="t1-rate">T+1 合规率 <span class="muted">on time</span><b>${pct(s.t1_compliance_rate)}</b></div>`);
  cards.push(`<div class="card" id="t0-rate">当日上传率 T+0 <span class="muted">accepted on day D</span><b>${pct(s.t0_rate)}</b></div>`);
  cards.push(`<div class="card" id="overdue">逾期未接收 <span class="muted">overdue (T+1)</span><b>${s.overdue}</b></div>`);
  cards.push(`<div class="card">待确认 <span class="muted">in doubt</span><b>${s.in_doubt}</b></div>`);
  cards.push(`<div class="card">重复冲突 <span class="muted">conflicts</span><b>${s.conflicts}</b></div>`);
  cards.push(`<div class="card">源数据问题 <span class="muted">source issues</span><b>${s.source_issues}</b></div>`);
  $("summary").innerHTML = cards.join("");
}

function cellTitle(day, code, cell) {
  const counts = Object.entries(cell.states || {}).map(([k, v]) => `${STATE_LABELS[k] || k} ${v}`);
  if (cell.source_issues) counts.push(`源数据问题 ${cell.source_issues}`);
  return `${day} ${txnName(code)}: ${ui.labels[cell.status] || cell.status}` + (counts.length ? ` (${counts.join(", ")})` : "");
}
function monthBlock(month, days) {
  const head = "<tr><th>" + esc(month) + "</th>" + days.map((d) => `<th class="day">${+d.business_date.slice(8)}</th>`).join("") + "</tr>";
  const body = ui.columns.map(({code, label, key}) => `<tr><th>${esc(label)} <span class="muted">${esc(key)} ${esc(code)}</span></th>` +
    days.map((d) => {
      const cell = d.transactions[code];
      const mark = cell.status === "none" ? "" : (cell.status === "complete" ? "✓" : (cell.status === "missing" ? "×" : "!"));
      return `<td class="cell ${cell.status}" data-day="${esc(d.business_date)}" data-txn="${esc(code)}" data-status="${cell.status}"` +
        ` title="${esc(cellTitle(d.business_date, code, cell))}">${mark}</td>`;
    }).join("") + "</tr>").join("");
  const balance = "<tr><th>进销存平衡 <span class=\"muted\">balance</span></th>" + days.map((d) => {
    const b = d.balance || {status: "none"};
    return `<td class="cell balance ${b.status}" data-day="${esc(d.business_date)}" data-txn="${esc(stockCode())}" data-status="${b.status}"` +
      ` title="${esc(d.business_date + " " + (BALANCE_LABELS[b.status] || "未核对"))}">${b.status === "none" || b.status === "ok" ? "" : "!"}</td>`;
  }).join("") + "</tr>";
  return `<table class="month" data-month="${esc(month)}"><thead>${head}</thead><tbody>${body}${balance}</tbody></table>`;
}
function stockCode() { const c = ui.columns.find((col) => col.key === "stock"); return c ? c.code : ""; }

async function loadCalendar() {
  const c = await api("api/calendar", {days: DAYS});
  ui.names = c.names; ui.labels = c.labels; ui.columns = c.columns;
  $("legend").innerHTML = Object.entries(c.labels).map(([k, v]) => `<span class="${k}">${esc(v)} ${k}</span>`).join("") +
    Object.entries(BALANCE_LABELS).filter(([k]) => k !== "none" && k !== "ok").map(([k, v]) => `<span class="${k}">${esc(v)} ${k}</span>`).join("");
  const months = {};
  c.days.forEach((d) => (months[d.business_date.slice(0, 7)] = months[d.business_date.slice(0, 7)] || []).push(d));
  const blocks = Object.keys(months).sort().reverse().map((m) => monthBlock(m, months[m]));
  $("calendar").innerHTML = blocks.length ? blocks.join("") : '<p class="muted">还没有上传记录 (no uploads yet)</p>';
  document.querySelectorAll("#calendar td.cell").forEach((cell) => {
    if (cell.dataset.status !== "none" || cell.classList.contains("balance")) {
      cell.addEventListener("click", () => openDay(cell.dataset.day, cell.dataset.txn).catch(fail));
    }
  });
  const sel = $("f-txn");
  if (sel.options.length === 1) Object.entries(ui.names).forEach(([code, name]) => sel.add(new Option(`${name} ${code}`, code)));
}

function table(id, headers, body) {
  return `<table id="${id}"><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${body.join("")}</tbody></table>`;
}
function rejectRow(x) {
  return `<tr class="reject">${td(x.institution_code)}${td(x.serial_no)}${td(txnName(x.transaction_code))}${td(x.business_date)}` +
    `${td(x.mapping_serial_no)}${td(x.item_name)}${td(x.field)}${td(x.category)}${td(x.detail, "reason")}${td(STATE_LABELS[x.state] || x.state)}</tr>`;
}
async function openDay(day, code) {
  const d = await api("api/day", {day, transaction: code});
  document.querySelectorAll("#calendar td.selected").forEach((c) => c.classList.remove("selected"));
  document.querySelectorAll(`#calendar td[data-day="${day}"][data-txn="${code}"]:not(.balance)`).forEach((c) => c.classList.add("selected"));
  const el = $("detail");
  const states = Object.entries(d.states).map(([k, v]) => `<div class="card" data-state="${esc(k)}">${esc(STATE_LABELS[k] || k)} <span class="muted">${esc(k)}</span><b>${v}</b></div>`);
  const cats = Object.entries(d.categories).map(([k, v]) => `${esc(k)} ${v}`).join(" · ");
  const runs = d.runs.map((r) => `<li><a href="../dags/${encodeURIComponent(r.dag_id)}/runs/${encodeURIComponent(r.run_id)}" target="_top">${esc(r.dag_id)} · ${esc(r.run_id)}</a>` +
    ` <span class="muted">${r.rows} 行</span> · <a href="${esc(withScope("run", {dag_id: r.dag_id, run_id: r.run_id}))}">上传明细 upload</a></li>`);
  const inst = chosenInstitution();
  el.innerHTML = `<h2 id="detail-title">${esc(day)} ${esc(txnName(code))} · 共 ${d.rows} 行</h2>` +
    `<div class="cards">${states.join("") || '<span class="muted">这一天没有该交易的行 (no rows)</span>'}</div>` +
    (cats ? `<p class="muted">被拒类别 categories: ${cats}</p>` : "") +
    `<div class="actions"><button id="rerun" class="primary"${inst && inst.daily_dag_id ? "" : " disabled"}>补传 / 重跑 ${esc(day)}</button>` +
    `<span id="rerun-status" class="muted">${inst ? (inst.daily_dag_id ? `触发 ${esc(inst.daily_dag_id)} (business_date=${esc(day)})` : "该机构没有每日 DAG") : "先选择一个机构 (choose an institution)"}</span></div>` +
    `<h3>被拒记录 rejects <span class="muted">${d.rejects.total} 条 · <a id="detail-csv" href="${esc(withScope("api/rejects/export", {fmt: "csv", day, transaction: code}))}">CSV</a> · <a id="detail-xlsx" href="${esc(withScope("api/rejects/export", {fmt: "xlsx", day, transaction: code}))}">Excel</a></span></h3>` +
    table("detail-rejects", ["机构", "流水号", "交易", "业务日期", "项目", "项目名称", "字段", "类别", "原因 reason", "状态"], d.rejects.rows.map(rejectRow)) +
    `<h3>待确认 in doubt</h3>` + table("detail-doubt", ["机构", "流水号", "项目", "名称", "状态", "说明", "发送次数", "最后发送"],
      d.in_doubt.map((x) => `<tr>${td(x.institution_code)}${td(x.serial_no)}${td(x.mapping_serial_no)}${td(x.item_name)}${td(STATE_LABELS[x.state] || x.state)}${td(x.detail)}${td(x.attempts)}${td(x.last_sent_at)}</tr>`)) +
    `<h3>源数据问题 source issues</h3>` + table("detail-issues", ["机构", "源数据行", "流水号", "项目", "名称", "类别", "字段", "原因 reason"],
      d.source_issues.map((x) => `<tr>${td(x.institution_code)}${td(x.source_row)}${td(x.serial_no)}${td(x.mapping_serial_no)}${td(x.item_name)}${td(x.category)}${td(x.field)}${td(x.detail, "reason")}</tr>`)) +
    `<h3>进销存平衡 balance · ${esc(BALANCE_LABELS[d.balance.status] || "未核对 not audited")}</h3>` +
    table("detail-balance", ["机构", "项目", "期初", "入库", "出库", "期末", "差异", "状态", "源数据差异", "源数据状态"],
      d.balance.rows.map((r) => `<tr>${td(r.institution_code)}${td(r.mapping_serial_no)}${[r.opening, r.inbound, r.outbound, r.closing, r.difference].map((v) => td(num(v))).join("")}` +
        `${td(r.status, r.status || "")}${td(num(r.source_difference))}${td(r.source_status, r.source_status || "")}</tr>`)) +
    `<h3>DAG 运行 runs</h3><ul id="detail-runs">${runs.join("") || '<li class="muted">无</li>'}</ul>`;
  el.hidden = false;
  if (inst && inst.daily_dag_id) $("rerun").addEventListener("click", () => rerun(inst.daily_dag_id, day));
  el.scrollIntoView({block: "nearest"});
}
const num = (v) => (v === null || v === undefined ? "" : String(+(+v).toFixed(6)));

// 补传: Airflow's REST API with the user's own session, so Airflow decides who may (a Viewer may not)
async function rerun(dagId, day) {
  const status = $("rerun-status");
  $("rerun").disabled = true;
  const base = "../api/v2/dags/" + encodeURIComponent(dagId) + "/dagRuns";
  const resp = await fetch(base, {method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({logical_date: null, conf: {business_date: day}, note: "补传 · 医保上传监控"})});
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const why = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "");
    status.innerHTML = `<span class="refused" data-refused="${resp.status}">Airflow 拒绝 (${resp.status}): ${esc(why)}</span>`;
    $("rerun").disabled = false;
    return;
  }
  status.dataset.runId = body.dag_run_id;
  status.innerHTML = `已创建运行 <a href="../dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(body.dag_run_id)}" target="_top">${esc(body.dag_run_id)}</a> · <span id="rerun-state">${esc(RUN_LABELS[body.state] || body.state)}</span> <span id="rerun-tasks" class="muted"></span>`;
  pollRun(base + "/" + encodeURIComponent(body.dag_run_id));
}
async function pollRun(url) {
  try {
    const [runResp, tisResp] = await Promise.all([fetch(url, {credentials: "same-origin"}),
      fetch(url + "/taskInstances", {credentials: "same-origin"})]);
    if (!runResp.ok || !tisResp.ok) {  // e.g. the session ended: stop asking
      $("rerun-state").textContent = `无法读取运行状态 (HTTP ${runResp.ok ? tisResp.status : runResp.status})`;
      return;
    }
    const run = await runResp.json();
    const tis = await tisResp.json();
    $("rerun-state").textContent = RUN_LABELS[run.state] || run.state;
    $("rerun-state").dataset.state = run.state;
    $("rerun-tasks").textContent = (tis.task_instances || []).map((t) => `${t.task_id}: ${t.state || "—"}`).join(" · ");
    if (run.state !== "success" && run.state !== "failed") setTimeout(() => pollRun(url), 3000);
  } catch (err) { fail(err); }
}

const PERCENT = {yAxis: {type: "value", name: "%", axisLabel: {formatter: "{value}%"}},
  tooltip: {trigger: "axis", valueFormatter: (v) => (v === null ? "—" : v + "%")}};
function chart(id, title, xAxis, option) {
  const c = echarts.init($(id), dark() ? "dark" : null, {renderer: "svg"});
  c.setOption({backgroundColor: "transparent", tooltip: {trigger: "axis"}, legend: {top: 20},
    title: {text: title, left: "center", top: 0, textStyle: {fontSize: 13}}, xAxis,
    grid: {left: 56, right: 24, top: 56, bottom: 32}, textStyle: {fontFamily: "Inter, sans-serif"}, ...option});
  ui.charts.push(c);
}
async function loadTrend() {
  const t = await api("api/trend", {days: DAYS});
  const days = [...new Set(t.points.map((p) => p.business_date))].sort();
  const codes = [...new Set(t.points.map((p) => p.transaction_code))].sort();
  const at = {};
  t.points.forEach((p) => (at[p.business_date + "|" + p.transaction_code] = p));
  const series = (key, type, scale) => codes.map((code) => ({name: txnName(code), type, smooth: false, showSymbol: days.length < 40,
    data: days.map((d) => { const p = at[d + "|" + code]; return p && p[key] !== null ? +(p[key] * scale).toFixed(2) : null; })}));
  const xAxis = {type: "category", data: days, name: "业务日期"};
  ui.charts.splice(0).forEach((c) => c.dispose());  // every chart is redrawn: theme or institution changed
  chart("chart-rows", "每日行数 rows per day", xAxis, {yAxis: {type: "value", name: "行 rows"}, series: series("rows", "line", 1)});
  chart("chart-rate", "被拒率 reject rate", xAxis, {...PERCENT, series: series("reject_rate", "line", 100)});
  chart("chart-late", "T+1 迟报率 accepted late", xAxis, {...PERCENT, series: series("late_rate", "bar", 100)});
}

function filterParams() {
  const p = {};
  const v = (id) => $(id).value;
  if (v("f-day")) p.day = v("f-day");
  if (v("f-txn")) p.transaction = v("f-txn");
  if (v("f-cat")) p.category = v("f-cat");
  if (v("f-item")) p.item = v("f-item");
  return p;
}
async function loadRejects() {
  const filters = filterParams();
  const r = await api("api/rejects", {...filters, limit: PAGE, offset: ui.offset});
  const shown = r.rows.length ? `${ui.offset + 1}–${ui.offset + r.rows.length}` : "0";
  $("reject-total").textContent = `共 ${r.total} 条, 显示 ${shown}`;
  $("page-prev").disabled = ui.offset === 0;
  $("page-next").disabled = ui.offset + PAGE >= r.total;
  $("export-csv").href = withScope("api/rejects/export", {fmt: "csv", ...filters});
  $("export-xlsx").href = withScope("api/rejects/export", {fmt: "xlsx", ...filters});
  const sel = $("f-cat");
  if (sel.options.length === 1) r.categories.forEach((c) => sel.add(new Option(c, c)));
  rows("rejects", r.rows.map(rejectRow));
}
async function loadQueues() {
  const q = await api("api/queues");
  rows("queue-doubt", q.in_doubt.map((x) => `<tr>${td(x.institution_code)}${td(x.serial_no)}${td(txnName(x.transaction_code))}${td(x.business_date)}` +
    `${td(STATE_LABELS[x.state] || x.state)}${td(x.detail)}${td(x.attempts)}${td(x.last_sent_at)}</tr>`));
  rows("queue-conflict", q.conflicts.map((x) => `<tr>${td(x.institution_code)}${td(x.serial_no)}${td(txnName(x.transaction_code))}${td(x.business_date)}` +
    `${td((x.mapping_serial_no || "") + " " + (x.item_name || ""))}${td(x.detail)}${td(x.updated_at)}</tr>`));
  rows("queue-source", q.source_issues.map((x) => `<tr class="source-issue">${td(x.institution_code)}${td(txnName(x.transaction_code))}` +
    `${td(x.business_date)}${td(x.source_row)}${td(x.serial_no)}${td((x.mapping_serial_no || "") + " " + (x.item_name || ""))}` +
    `${td(x.category)}${td(x.detail, "reason")}${td(x.seen_at)}</tr>`));
}

async function loadAll() {
  document.body.setAttribute("data-loaded", "0");
  clearBanner();
  $("detail").hidden = true;
  try {
    // the calendar brings the profile's transaction names the other parts use
    await loadCalendar();
    await Promise.all([loadSummary(), loadTrend(), loadRejects(), loadQueues()]);
    document.body.setAttribute("data-loaded", "1");
  } catch (err) {
    fail(err);
    document.body.setAttribute("data-loaded", "error");
  }
}

applyTheme();
window.addEventListener("storage", (e) => { if (e.key === "theme") { applyTheme(); loadTrend().catch(fail); } });
window.addEventListener("resize", () => ui.charts.forEach((c) => c.resize()));
$("institution").addEventListener("change", (e) => {
  ui.institution = e.target.value; ui.offset = 0;
  $("f-cat").length = 1;  // the categories are the chosen institution's
  const url = new URL(location.href);
  if (ui.institution) url.searchParams.set("institution", ui.institution); else url.searchParams.delete("institution");
  history.replaceState(null, "", url);
  loadAll();
});
$("f-go").addEventListener("click", () => { ui.offset = 0; loadRejects().catch(fail); });
$("page-prev").addEventListener("click", () => { ui.offset = Math.max(0, ui.offset - PAGE); loadRejects().catch(fail); });
$("page-next").addEventListener("click", () => { ui.offset += PAGE; loadRejects().catch(fail); });
loadInstitutions().then(loadAll).catch((err) => { fail(err); document.body.setAttribute("data-loaded", "error"); });
