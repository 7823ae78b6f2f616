"""The judging page: one HTML document with its CSS and JavaScript inline (no external asset, no CDN;
the machine may be offline). Images come from the same server by opaque id.

Keys: pairwise, Left arrow / A / 1 picks the left image, Right arrow / L / 2 the right one;
real-vs-fake, R or Left arrow says real, G / F or Right arrow says generated.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>genlab judge</title>
<style>
:root { color-scheme: light; --accent: #0b4ea2; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #111;
       background: #fafafa; margin: 0 auto; max-width: 760px; padding: 10px 14px 30px; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 16px; }
h1 { font-size: 1.25em; margin: 0.3em 0; flex: 1 1 auto; }
#tasks { display: flex; gap: 6px; }
#tasks button { font: inherit; font-size: 0.9em; padding: 6px 10px; border: 1px solid #999; border-radius: 6px;
                background: #fff; cursor: pointer; }
#tasks button[aria-selected=true] { background: var(--accent); color: #fff; border-color: var(--accent); }
#progress { width: 100%; display: flex; align-items: center; gap: 10px; font-variant-numeric: tabular-nums; }
progress { flex: 1 1 auto; height: 12px; accent-color: var(--accent); }
#prompt { font-size: 1.15em; font-weight: 600; text-align: center; margin: 0.8em 0 0.6em; }
.stage { display: flex; justify-content: center; gap: 12px; flex-wrap: nowrap; }
.pick { flex: 0 1 300px; background: #fff; border: 3px solid #bbb; border-radius: 10px; padding: 8px;
        cursor: pointer; font: inherit; color: #333; display: flex; flex-direction: column; align-items: center;
        gap: 6px; touch-action: manipulation; }
.pick:hover, .pick:focus-visible { border-color: var(--accent); outline: none; }
.pick.chosen { border-color: #1a7f37; background: #eaf6ec; }
.stage img, #single img { width: 100%; max-width: 280px; aspect-ratio: 1 / 1; image-rendering: pixelated;
                          background: #000; display: block; }
#single { display: flex; flex-direction: column; align-items: center; gap: 12px; }
#single .frame { width: min(70vw, 300px); }
.answers { display: flex; gap: 12px; width: 100%; justify-content: center; }
.answers .pick { flex: 0 1 180px; min-height: 52px; font-size: 1.05em; font-weight: 600; }
.key { font-size: 0.8em; color: #555; }
kbd { border: 1px solid #aaa; border-bottom-width: 2px; border-radius: 4px; padding: 0 4px; font-size: 0.9em;
      background: #fff; }
#status { min-height: 1.5em; text-align: center; color: #555; }
#status.error { color: #a00; font-weight: 600; }
#done { text-align: center; font-size: 1.15em; }
footer { margin-top: 1.5em; font-size: 0.85em; color: #555; }
[hidden] { display: none !important; }
body[data-state=busy] .pick { opacity: 0.6; cursor: progress; }
@media (max-width: 420px) { body { padding: 6px 8px 20px; } .stage { gap: 6px; } .pick { padding: 4px; } }
</style></head>
<body data-state="loading">
<header>
  <h1>genlab judge</h1>
  <div id="tasks" role="tablist" aria-label="task" hidden>
    <button role="tab" id="tab-pairwise" data-task="pairwise" aria-selected="true">Which looks real?</button>
    <button role="tab" id="tab-realfake" data-task="realfake" aria-selected="false">Real or generated?</button>
  </div>
  <div id="progress"><progress id="bar" max="1" value="0"></progress>
    <span id="count" aria-live="polite">0 / ?</span></div>
</header>
<main>
  <p id="prompt">Loading&hellip;</p>
  <div id="pairwise" class="stage" hidden>
    <button class="pick" id="left" data-choice="left" aria-label="left image looks more real">
      <img id="img-left" alt="left image"><span class="key"><kbd>&larr;</kbd> or <kbd>A</kbd></span></button>
    <button class="pick" id="right" data-choice="right" aria-label="right image looks more real">
      <img id="img-right" alt="right image"><span class="key"><kbd>&rarr;</kbd> or <kbd>L</kbd></span></button>
  </div>
  <div id="single" hidden>
    <div class="frame"><img id="img-single" alt="the image to judge"></div>
    <div class="answers">
      <button class="pick" id="real" data-choice="real">Real <span class="key"><kbd>R</kbd></span></button>
      <button class="pick" id="generated" data-choice="generated">Generated <span class="key"><kbd>G</kbd></span></button>
    </div>
  </div>
  <p id="done" hidden></p>
  <p id="status" role="status"></p>
</main>
<footer>Trust your first impression; there is no time limit. Your answers are stored under a random session id,
nothing else about you.</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const S = { task: null, item: null, busy: true, info: null };
const PROMPTS = {
  pairwise: (s) => `Which image looks more like a real ${s}?`,
  realfake: (s) => `Is this a real ${s}, or generated by a model?`,
};

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } },
                                            options || {}));
  let body = {};
  try { body = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error(body.error || `server answered ${r.status}`);
  return body;
}

function setState(state) { document.body.dataset.state = state; S.busy = state !== "ready"; }
function status(text, isError) { $("status").textContent = text || ""; $("status").className = isError ? "error" : ""; }

function showProgress(p) {
  if (!p) return;
  $("bar").max = p.goal; $("bar").value = p.answered;
  $("count").textContent = `${p.answered} / ${p.goal}`;
}

function loadImage(img, src) {
  img.src = src;
  return img.decode().catch(() => { throw new Error("an image did not load"); });
}

async function next() {
  setState("busy");
  status("");
  try {
    const item = await api(`/api/pair?task=${encodeURIComponent(S.task)}`);
    showProgress(item.progress);
    if (item.done) return finish(item.progress);
    const pair = item.task === "pairwise";
    $("pairwise").hidden = !pair; $("single").hidden = pair; $("done").hidden = true;
    $("prompt").textContent = PROMPTS[item.task](S.info.subject);
    document.querySelectorAll(".pick").forEach((b) => b.classList.remove("chosen"));
    if (pair) await Promise.all([loadImage($("img-left"), item.images[0]), loadImage($("img-right"), item.images[1])]);
    else await loadImage($("img-single"), item.images[0]);
    S.item = item;
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();  // no side looks chosen
    document.body.dataset.pair = item.id;
    setState("ready");
  } catch (e) {
    status(`${e.message} (reload the page to try again)`, true);
    setState("error");
  }
}

function finish(p) {
  S.item = null;
  delete document.body.dataset.pair;
  $("pairwise").hidden = true; $("single").hidden = true;
  $("prompt").textContent = "All done";
  $("done").textContent = `Thank you! You answered all ${p.goal}. You can close this page.`;
  $("done").hidden = false;
  setState("done");
}

async function answer(choice) {
  if (S.busy || !S.item || !S.item.choices.includes(choice)) return;
  setState("busy");
  const b = document.querySelector(`.pick[data-choice=${choice}]`);
  if (b) b.classList.add("chosen");
  try {
    const r = await api("/api/judgement", { method: "POST", body: JSON.stringify({ pair: S.item.id, choice }),
                                            headers: { "Content-Type": "application/json", Accept: "application/json" } });
    showProgress(r.progress);
    S.item = null;
    await next();
  } catch (e) {
    status(`not recorded: ${e.message}`, true);
    if (b) b.classList.remove("chosen");
    setState("ready");
  }
}

function choose(task) {
  if (!S.info.tasks.includes(task)) return;
  S.task = task;
  document.querySelectorAll("#tasks button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.task === task)));
  if (location.hash !== `#${task}`) history.replaceState(null, "", `#${task}`);
  next();
}

const KEYS = {
  pairwise: { ArrowLeft: "left", a: "left", 1: "left", ArrowRight: "right", l: "right", 2: "right" },
  realfake: { ArrowLeft: "real", r: "real", ArrowRight: "generated", g: "generated", f: "generated" },
};

document.addEventListener("keydown", (e) => {
  if (e.altKey || e.ctrlKey || e.metaKey || !S.item) return;
  const choice = KEYS[S.item.task][e.key.length === 1 ? e.key.toLowerCase() : e.key];
  if (choice) { e.preventDefault(); answer(choice); }
});
document.querySelectorAll(".pick").forEach((b) => b.addEventListener("click", () => answer(b.dataset.choice)));
document.querySelectorAll("#tasks button").forEach((b) => b.addEventListener("click", () => choose(b.dataset.task)));

(async () => {
  try {
    S.info = await api("/api/study");
  } catch (e) { status(`${e.message} (is the study server running?)`, true); setState("error"); return; }
  $("tasks").hidden = S.info.tasks.length < 2;
  $("tab-realfake").hidden = !S.info.tasks.includes("realfake");
  choose(S.info.tasks.includes(location.hash.slice(1)) ? location.hash.slice(1) : S.info.tasks[0]);
})();
</script>
</body></html>
"""
