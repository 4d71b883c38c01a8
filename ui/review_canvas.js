// The review canvas: one queued item large, in the spirit of CVAT's skeleton editor.
//
// Python sends the reviewer's leased items (images as data URLs, label and teacher skeletons,
// scores) and the sequence number of the last action it has stored. Keys and buttons become
// actions ({seq, action, key, reasons, keypoints, ...}); every trigger carries all actions not yet
// acknowledged, so a trigger lost between reruns is resent and the server (which skips sequence
// numbers it has stored) never records one twice. The next leased item is shown at once, before
// the server confirms; what the database holds always wins on the next update.
//
// Hotkeys are handled on the window (capture phase), so they work wherever focus is, except while
// typing in a text field.

/* global STYLE */   // the stylesheet (review_canvas.css), prepended by ui/review_canvas.py
const CTRL = new WeakMap();
const AGREE = { good: "#28c850", part: "#f5b414", bad: "#e62828", none: "#9aa0a6" };
const LEFT = "#0099ff", RIGHT = "#ff8000", CENTRE = "#33cc33", TEACHER = "#ff4fd8", SELECT = "#ffe14d";
const VIS_NAMES = ["not labelled", "occluded", "visible"];

export default function (component) {
  const { parentElement, data, setTriggerValue } = component;
  let c = CTRL.get(parentElement);
  if (!c) {
    c = controller(parentElement);
    CTRL.set(parentElement, c);
  }
  c.setTrigger = setTriggerValue;
  c.update(data || {});
  return c.cleanup;
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);
}

function agreeColour(a) {
  if (a === null || a === undefined) return AGREE.none;
  return a >= 0.75 ? AGREE.good : a >= 0.5 ? AGREE.part : AGREE.bad;
}

function side(name) {
  return name.startsWith("left") ? LEFT : name.startsWith("right") ? RIGHT : CENTRE;
}

function isTyping(t) {
  if (!t || !t.tagName) return false;
  if (t.isContentEditable || t.tagName === "TEXTAREA") return true;
  if (t.tagName !== "INPUT") return false;
  return !["checkbox", "radio", "button", "submit", "reset", "range", "color", "file", "image"].includes(t.type);
}

function controller(root) {
  const el = document.createElement("div");
  el.className = "rc";
  el.setAttribute("data-testid", "review-canvas");
  el.innerHTML = `<style>${typeof STYLE === "string" ? STYLE : ""}</style>
    <div class="stage" aria-label="Review image">
      <canvas role="img" aria-label="The item under review"></canvas>
      <div class="loading" role="status"></div>
      <div class="hud"><span class="zoom"></span><span class="hint">wheel or +/- zoom · drag to pan · 0 resets</span></div>
    </div>
    <aside class="side">
      <div class="pos" aria-live="polite"></div>
      <div class="meta"></div>
      <div class="msg" role="status" aria-live="polite"></div>
      <div class="row decide">
        <button class="primary" data-do="accept">Accept <kbd>A</kbd></button>
        <button data-do="reject">Reject <kbd>X</kbd></button>
        <button data-do="skip">Skip <kbd>S</kbd></button>
        <button data-do="fix">Fix <kbd>F</kbd></button>
        <button data-do="undo">Undo <kbd>U</kbd></button>
      </div>
      <div class="row fixrow" hidden>
        <button class="primary" data-do="acceptfix">Accept corrected <kbd>Shift+A</kbd></button>
        <button data-do="cancelfix">Cancel fix <kbd>Esc</kbd></button>
        <button data-do="undomove">Undo move <kbd>Ctrl+Z</kbd></button>
      </div>
      <div class="fixinfo" hidden>
        <label>Joint <select class="joint"></select></label>
        <button data-do="vis">Visibility <kbd>V</kbd></button>
        <div class="jointstate"></div>
      </div>
      <fieldset class="reasons"><legend>Reject reasons (number keys)</legend><div class="row"></div></fieldset>
      <div class="row layers">
        <button data-do="labels" aria-pressed="true">Label skeleton <kbd>L</kbd></button>
        <button data-do="teacher" aria-pressed="true">Teacher <kbd>T</kbd></button>
      </div>
      <div class="legend">Label joints:<i style="background:${AGREE.good}"></i>teacher agrees<i style="background:${AGREE.part}"></i>partly<i style="background:${AGREE.bad}"></i>disagrees · teacher dashed</div>
      <table class="scores"></table>
      <details class="keys"><summary>Hotkeys</summary><ul>
        <li><b>A</b> accept · <b>X</b> reject · <b>S</b> skip · <b>U</b> undo your last decision</li>
        <li><b>1</b>-<b>9</b> toggle a reject reason (reset for every item)</li>
        <li><b>F</b> fix: drag joints; click a joint then <b>V</b> (or <b>I</b>) cycles visible / occluded / not labelled</li>
        <li><b>Shift+A</b> accept the corrected label · <b>Ctrl+Z</b> undo a joint move · <b>Esc</b> cancel the fix</li>
        <li>Wheel or <b>+</b>/<b>-</b> zoom · drag the background or hold <b>Space</b> and drag to pan · <b>0</b> fit</li>
        <li><b>L</b> / <b>T</b> show or hide the label / teacher skeleton</li>
      </ul></details>
    </aside>`;
  root.appendChild(el);
  const $ = (sel) => el.querySelector(sel);
  const stage = $(".stage"), canvas = $("canvas"), ctx = canvas.getContext("2d");

  const S = {
    data: { items: [], reasons: [], ack: 0 },
    session: Math.random().toString(36).slice(2) + Date.now().toString(36),
    seq: 0, outbox: [], sends: 0, sentAt: 0,
    images: new Map(),
    curKey: null, shownAt: performance.now(),
    reasons: new Set(), fix: null, sel: null,
    view: { z: 1, px: 0, py: 0 }, T: null,
    showLabels: true, showTeacher: true,
    undoSeq: 0, flash: "", space: false, hover: false, drag: null, lat: null, height: 0,
  };
  const c = { setTrigger: null };

  // ------------------------------------------------------------------ queue and actions
  function pendingKeys() {
    return new Set(S.outbox.filter((a) => a.key).map((a) => a.key));
  }
  function queue() {
    const p = pendingKeys();
    return (S.data.items || []).filter((it) => !p.has(it.key));
  }
  function current() {
    return S.undoSeq ? null : queue()[0] || null;
  }
  function flush() {
    if (!S.outbox.length || !c.setTrigger) return;
    S.sends += 1;
    S.sentAt = performance.now();
    c.setTrigger("action", { session: S.session, send: S.sends, actions: S.outbox });
  }
  function send(a) {
    S.seq += 1;
    a.seq = S.seq;
    S.outbox.push(a);
    flush();
    return a.seq;
  }
  const resend = setInterval(() => {
    if (S.outbox.length && performance.now() - S.sentAt > 2500) flush();
    layout();
  }, 400);

  function decide(kind, t0) {
    const it = current();
    if (!it) return say(S.undoSeq ? "Undoing…" : "There is no item to decide.");
    if (kind === "fix" && !S.fix) kind = "accept";
    const a = { action: kind, key: it.key, item_id: it.item_id, slot: it.slot,
                elapsed_ms: Math.round(performance.now() - S.shownAt) };
    if (kind === "reject") a.reasons = [...S.reasons].sort((x, y) => x - y).map((i) => S.data.reasons[i]);
    if (kind === "fix") {
      a.keypoints = S.fix.k.map(([x, y, v]) => (v > 0 ? [x, y, v] : [0, 0, 0]));
      a.person_id = it.labels[S.fix.person].person_id;
    }
    S.lat = { t0: t0 ?? performance.now(), from: it.key };
    send(a);
    render();
  }
  function skip(t0) {
    const it = current();
    if (!it) return;
    S.lat = { t0: t0 ?? performance.now(), from: it.key };
    send({ action: "skip", key: it.key, item_id: it.item_id, slot: it.slot });
    render();
  }
  function undoDecision() {
    if (S.fix) cancelFix();
    S.undoSeq = send({ action: "undo" });
    render();
  }

  // ------------------------------------------------------------------ fixing
  function startFix(person) {
    const it = current();
    if (!it || !it.labels.length) return say("This image has no label to fix.");
    if (S.fix && S.fix.person === person) return;
    if (S.fix && S.fix.history.length) {
      return say("One person per fix: accept it (Shift+A) or cancel it (Esc) first.");
    }
    S.fix = { person, k: it.labels[person].kpts.map((p) => p.slice()), history: [] };
    S.showLabels = true;
    if (!S.sel || S.sel.person !== person) S.sel = { person, joint: firstLabelled(S.fix.k) };
    say("");
    render();
  }
  function firstLabelled(k) {
    const j = k.findIndex((p) => p[2] > 0);
    return j < 0 ? 0 : j;
  }
  function cancelFix() {
    S.fix = null;
    S.drag = null;
    render();
  }
  function undoMove() {
    if (!S.fix || !S.fix.history.length) return say("No joint move to undo.");
    S.fix.k = S.fix.history.pop();
    render();
  }
  function cycleVisibility() {
    const it = current();
    if (!it || !it.labels.length) return;
    if (!S.sel) return say("Select a joint first: click it, or pick it in the list.");
    startFix(S.sel.person);
    if (!S.fix || S.fix.person !== S.sel.person) return;
    const k = S.fix.k, j = S.sel.joint;
    S.fix.history.push(k.map((p) => p.slice()));
    const v = k[j][2] > 0 ? k[j][2] - 1 : 2;
    if (v > 0 && k[j][0] === 0 && k[j][1] === 0) {
      const [x, y] = viewCentre(it);
      k[j] = [x, y, v];
    } else {
      k[j] = [k[j][0], k[j][1], v];
    }
    render();
  }
  function viewCentre(it) {
    const T = S.T;
    if (!T) return [it.w / 2, it.h / 2];
    const cw = stage.clientWidth, ch = stage.clientHeight;
    return [clamp((cw / 2 - T.ox) / T.s, 0, it.w), clamp((ch / 2 - T.oy) / T.s, 0, it.h)];
  }
  function clamp(v, lo, hi) {
    return Math.min(hi, Math.max(lo, v));
  }

  // ------------------------------------------------------------------ view
  function zoomAt(factor, sx, sy) {
    const it = current();
    if (!it || !S.T) return;
    const cw = stage.clientWidth, ch = stage.clientHeight;
    const z = clamp(S.view.z * factor, 0.5, 40);
    const f = z / S.view.z;
    if (sx === undefined) { sx = cw / 2; sy = ch / 2; }
    // keep the image point under (sx, sy) in place
    S.view.px = sx - cw / 2 - (sx - cw / 2 - S.view.px) * f;
    S.view.py = sy - ch / 2 - (sy - ch / 2 - S.view.py) * f;
    S.view.z = z;
    draw();
  }
  function resetView() {
    S.view = { z: 1, px: 0, py: 0 };
    draw();
  }

  // ------------------------------------------------------------------ messages
  function say(text) {
    S.flash = text;
    const m = $(".msg");
    m.classList.remove("error");
    m.textContent = text || S.data.msg || S.data.note || "";
    if (!text && S.data.msg) m.classList.add("error");
  }

  // ------------------------------------------------------------------ layout and drawing
  function scroller() {
    let n = el;
    while (n) {
      n = n.parentNode || n.host;
      if (n && n.nodeType === 1) {
        const oy = getComputedStyle(n).overflowY;
        if ((oy === "auto" || oy === "scroll") && n.scrollHeight > n.clientHeight) return n;
      }
      if (n === document.documentElement) break;
    }
    return null;
  }
  function layout() {
    if (!el.isConnected) return;
    const sc = scroller();
    const top = el.getBoundingClientRect().top + (sc ? sc.scrollTop : window.scrollY);
    const h = Math.max(320, Math.floor(window.innerHeight - top - 16));
    if (h !== S.height) {
      S.height = h;
      el.style.height = `${h}px`;
      draw();
    }
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const cw = stage.clientWidth, ch = stage.clientHeight;
    el.dataset.fixing = S.fix ? "1" : "";
    if (!cw || !ch) {              // not laid out yet (e.g. right after a focused control was hidden)
      if (!S.redraw) S.redraw = requestAnimationFrame(() => { S.redraw = 0; draw(); });
      return;
    }
    if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
      canvas.width = Math.round(cw * dpr);
      canvas.height = Math.round(ch * dpr);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const it = current();
    const loading = $(".loading");
    stage.classList.toggle("fixing", !!S.fix);
    if (!it) {
      S.T = null;
      const waiting = S.undoSeq || S.outbox.length || (S.data.open || 0) > 0;
      stage.classList.add("waiting");
      loading.textContent = S.undoSeq ? "Undoing…" : waiting ? "Loading the next item…" : "The queue is empty. Thank you!";
      el.dataset.item = "";
      return;
    }
    const im = S.images.get(it.key);
    if (!im || !im.ready) {
      stage.classList.add("waiting");
      loading.textContent = "Loading the image…";
      return;
    }
    stage.classList.remove("waiting");
    const s0 = Math.min(cw / it.w, ch / it.h);
    const s = s0 * S.view.z;
    const ox = (cw - it.w * s) / 2 + S.view.px, oy = (ch - it.h * s) / 2 + S.view.py;
    S.T = { s, ox, oy };
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(im.img, ox, oy, it.w * s, it.h * s);
    const P = (x, y) => [ox + x * s, oy + y * s];
    const names = S.data.names || [];
    const edges = S.data.skeleton || [];
    if (S.showTeacher) {
      for (const t of it.teacher || []) {
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 2;
        ctx.strokeStyle = TEACHER;
        for (const [a, b] of edges) {
          if (t[a][2] < 0.3 || t[b][2] < 0.3) continue;
          ctx.beginPath();
          ctx.moveTo(...P(t[a][0], t[a][1]));
          ctx.lineTo(...P(t[b][0], t[b][1]));
          ctx.stroke();
        }
        ctx.setLineDash([]);
        for (const p of t) {
          if (p[2] < 0.3) continue;
          ctx.beginPath();
          ctx.arc(...P(p[0], p[1]), 3, 0, 2 * Math.PI);
          ctx.fillStyle = TEACHER;
          ctx.fill();
        }
      }
    }
    if (S.showLabels) {
      it.labels.forEach((person, pi) => {
        const fixing = S.fix && S.fix.person === pi;
        const k = fixing ? S.fix.k : person.kpts;
        ctx.setLineDash([]);
        for (const [a, b] of edges) {
          if (k[a][2] <= 0 || k[b][2] <= 0) continue;
          ctx.beginPath();
          ctx.moveTo(...P(k[a][0], k[a][1]));
          ctx.lineTo(...P(k[b][0], k[b][1]));
          ctx.lineWidth = 5;
          ctx.strokeStyle = "rgba(0,0,0,.55)";
          ctx.stroke();
          ctx.lineWidth = 3;
          ctx.strokeStyle = side(names[a] || "") === side(names[b] || "") ? side(names[a] || "") : CENTRE;
          ctx.stroke();
        }
        k.forEach((p, j) => {
          if (p[2] <= 0) return;
          const [x, y] = P(p[0], p[1]);
          const r = fixing ? 6 : 5;
          const colour = fixing ? "#ffffff" : agreeColour(person.agree ? person.agree[j] : null);
          ctx.beginPath();
          ctx.arc(x, y, r, 0, 2 * Math.PI);
          ctx.lineWidth = 2;
          ctx.strokeStyle = "#000";
          if (p[2] >= 2) {
            ctx.fillStyle = colour;
            ctx.fill();
            ctx.stroke();
          } else {          // occluded: a ring
            ctx.lineWidth = 4;
            ctx.stroke();
            ctx.lineWidth = 2;
            ctx.strokeStyle = colour;
            ctx.stroke();
          }
        });
        if (S.sel && S.sel.person === pi && k[S.sel.joint][2] > 0) {
          const [x, y] = P(k[S.sel.joint][0], k[S.sel.joint][1]);
          ctx.beginPath();
          ctx.arc(x, y, 11, 0, 2 * Math.PI);
          ctx.lineWidth = 3;
          ctx.strokeStyle = SELECT;
          ctx.stroke();
        }
      });
    }
    $(".zoom").textContent = `${Math.round(s * 100)}% · ${it.w}×${it.h}px`;
    el.dataset.item = it.key;
    el.dataset.view = JSON.stringify({ s: +s.toFixed(4), ox: +ox.toFixed(1), oy: +oy.toFixed(1), w: it.w, h: it.h, cw, ch });
    if (S.lat && S.lat.from !== it.key) {
      const lat = S.lat;
      S.lat = null;
      requestAnimationFrame(() => {
        (window.__reviewLatencies = window.__reviewLatencies || []).push(performance.now() - lat.t0);
      });
    }
  }

  function renderSide() {
    const it = current();
    const d = S.data;
    const pending = S.outbox.filter((a) => a.action !== "undo");
    const decided = pending.filter((a) => a.action !== "skip").length;
    const skipped = pending.length - decided;
    const total = (d.done || 0) + (d.open || 0) - skipped;
    $(".pos").textContent = it ? `Item ${(d.done || 0) + decided + 1} of ${Math.max(total, (d.done || 0) + decided + 1)}`
                               : `${(d.done || 0) + decided} decided`;
    $(".meta").innerHTML = it ? [
      `<b>Image #${esc(it.image_id)}</b> · rank ${esc(it.rank)}${it.slot ? " · second opinion" : ""}`,
      it.lineage ? esc(it.lineage) : "",
      it.prompt ? `<i>${esc(it.prompt)}</i>` : "",
    ].filter(Boolean).join("<br>") : "";
    say(S.flash);
    const fixing = !!S.fix;
    $(".decide").querySelector('[data-do="fix"]').disabled = !it || !it.labels.length;
    $(".decide").querySelector('[data-do="accept"]').hidden = fixing;
    $(".decide").querySelector('[data-do="fix"]').hidden = fixing;
    $(".fixrow").hidden = !fixing;
    $(".fixinfo").hidden = !fixing;
    const reasonsRow = $(".reasons .row");
    const reasons = d.reasons || [];
    if (reasonsRow.childElementCount !== reasons.length) {
      reasonsRow.innerHTML = reasons.map((r, i) =>
        `<button data-reason="${i}" aria-pressed="false" aria-keyshortcuts="${i + 1}">${i < 9 ? `<kbd>${i + 1}</kbd> ` : ""}${esc(r)}</button>`).join("");
    }
    reasonsRow.querySelectorAll("button").forEach((b) => {
      b.setAttribute("aria-pressed", S.reasons.has(+b.dataset.reason) ? "true" : "false");
    });
    $('[data-do="labels"]').setAttribute("aria-pressed", String(S.showLabels));
    const teacher = $('[data-do="teacher"]');
    teacher.setAttribute("aria-pressed", String(S.showTeacher));
    teacher.disabled = !it || !(it.teacher || []).length;
    if (fixing && it) {
      const sel = $(".joint");
      const names = d.names || [];
      if (sel.childElementCount !== names.length) {
        sel.innerHTML = names.map((n, j) => `<option value="${j}">${esc(n.replace("_", " "))}</option>`).join("");
      }
      const j = S.sel && S.sel.person === S.fix.person ? S.sel.joint : 0;
      sel.value = String(j);
      const v = S.fix.k[j][2];
      $(".jointstate").textContent = `${(names[j] || "").replace("_", " ")}: ${VIS_NAMES[v > 1 ? 2 : v > 0 ? 1 : 0]}` +
        ` · ${S.fix.history.length} change${S.fix.history.length === 1 ? "" : "s"}` +
        (it.labels.length > 1 ? ` · person ${S.fix.person + 1} of ${it.labels.length}` : "");
    }
    const rows = it ? it.scores || [] : [];
    $(".scores").innerHTML = rows.length
      ? `<tr><th>Stage</th><th>Status</th><th>Score</th></tr>` + rows.map((r) =>
          `<tr><td>${esc(r.stage)}</td><td>${esc(r.status)}</td><td class="num">${r.score === null ? "–" : esc(r.score)}</td></tr>`).join("")
      : "";
  }

  function render() {
    const it = current();
    const key = it ? it.key : null;
    if (key !== S.curKey) {
      S.curKey = key;
      S.reasons = new Set();
      S.fix = null;
      S.sel = null;
      S.drag = null;
      S.flash = "";
      S.view = { z: 1, px: 0, py: 0 };
      S.shownAt = performance.now();
    }
    renderSide();
    layout();
    draw();
  }

  // ------------------------------------------------------------------ data from Python
  c.update = (data) => {
    S.data = data;
    if (data.ack_session === S.session) {
      S.outbox = S.outbox.filter((a) => a.seq > (data.ack || 0));
      if (S.undoSeq && S.undoSeq <= (data.ack || 0)) S.undoSeq = 0;
    }
    const keys = new Set((data.items || []).map((it) => it.key));
    for (const k of [...S.images.keys()]) if (!keys.has(k)) S.images.delete(k);
    for (const it of data.items || []) {
      if (S.images.has(it.key)) continue;
      const img = new Image();
      const entry = { img, ready: false };
      S.images.set(it.key, entry);
      img.src = it.src;
      img.decode().catch(() => null).then(() => {
        entry.ready = true;
        if (current() && current().key === it.key) draw();
      });
    }
    if (data.msg || data.note) S.flash = "";
    render();
  };

  // ------------------------------------------------------------------ pointer
  function toImage(e) {
    const r = canvas.getBoundingClientRect();
    const sx = e.clientX - r.left, sy = e.clientY - r.top;
    return { sx, sy, x: S.T ? (sx - S.T.ox) / S.T.s : 0, y: S.T ? (sy - S.T.oy) / S.T.s : 0 };
  }
  function hit(sx, sy) {
    const it = current();
    if (!it || !S.T || !S.showLabels) return null;
    let best = null;
    it.labels.forEach((person, pi) => {
      const k = S.fix && S.fix.person === pi ? S.fix.k : person.kpts;
      k.forEach((p, j) => {
        if (p[2] <= 0) return;
        const d = Math.hypot(S.T.ox + p[0] * S.T.s - sx, S.T.oy + p[1] * S.T.s - sy);
        const bonus = S.fix && S.fix.person === pi ? 0.5 : 1;
        if (d <= 10 && (!best || d * bonus < best.d)) best = { person: pi, joint: j, d: d * bonus };
      });
    });
    return best;
  }
  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    const p = toImage(e);
    const h = S.space ? null : hit(p.sx, p.sy);
    canvas.setPointerCapture(e.pointerId);
    if (h) {
      if (S.fix && S.fix.person !== h.person && S.fix.history.length) {
        return say("One person per fix: accept it (Shift+A) or cancel it (Esc) first.");
      }
      S.sel = { person: h.person, joint: h.joint };
      S.drag = { type: "joint", moved: false };
      if (S.fix && S.fix.person === h.person) { renderSide(); draw(); }
      else draw();
      return;
    }
    S.drag = { type: "pan", x: e.clientX, y: e.clientY, px: S.view.px, py: S.view.py };
    stage.classList.add("panning");
  });
  canvas.addEventListener("pointermove", (e) => {
    const p = toImage(e);
    if (!S.drag) {
      stage.classList.toggle("onjoint", !S.space && !!hit(p.sx, p.sy));
      return;
    }
    if (S.drag.type === "pan") {
      S.view.px = S.drag.px + e.clientX - S.drag.x;
      S.view.py = S.drag.py + e.clientY - S.drag.y;
      draw();
      return;
    }
    const it = current();
    if (!it || !S.sel) return;
    if (!S.drag.moved) {
      if (!S.fix || S.fix.person !== S.sel.person) startFix(S.sel.person);
      if (!S.fix || S.fix.person !== S.sel.person) { S.drag = null; return; }
      S.fix.history.push(S.fix.k.map((q) => q.slice()));
      S.drag.moved = true;
    }
    const k = S.fix.k, j = S.sel.joint;
    k[j] = [clamp(p.x, 0, it.w), clamp(p.y, 0, it.h), k[j][2] > 0 ? k[j][2] : 2];
    draw();
  });
  const endDrag = () => {
    if (S.drag && S.drag.type === "joint" && S.drag.moved) renderSide();
    S.drag = null;
    stage.classList.remove("panning");
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("pointerenter", () => { S.hover = true; });
  canvas.addEventListener("pointerleave", () => { S.hover = false; });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const p = toImage(e);
    zoomAt(Math.exp(-e.deltaY * 0.0015), p.sx, p.sy);
  }, { passive: false });

  // ------------------------------------------------------------------ buttons
  el.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.reason !== undefined) return toggleReason(+b.dataset.reason);
    const t0 = e.timeStamp;
    ({
      accept: () => decide("accept", t0), reject: () => decide("reject", t0), skip: () => skip(t0),
      fix: () => startFix(S.sel ? S.sel.person : 0), undo: undoDecision,
      acceptfix: () => decide("fix", t0), cancelfix: cancelFix, undomove: undoMove, vis: cycleVisibility,
      labels: () => { S.showLabels = !S.showLabels; render(); },
      teacher: () => { S.showTeacher = !S.showTeacher; render(); },
    }[b.dataset.do] || (() => null))();
  });
  $(".joint").addEventListener("change", (e) => {
    if (!S.fix) return;
    S.sel = { person: S.fix.person, joint: +e.target.value };
    render();
  });
  function toggleReason(i) {
    if (i >= (S.data.reasons || []).length || !current()) return;
    if (S.reasons.has(i)) S.reasons.delete(i); else S.reasons.add(i);
    renderSide();
  }

  // ------------------------------------------------------------------ keys (anywhere on the page)
  function onKey(e) {
    if (!el.isConnected) return;
    const target = e.composedPath ? e.composedPath()[0] : e.target;
    if (isTyping(target)) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && key === "z" && !e.altKey) {
      if (!S.fix) return;
      undoMove();
    } else if (mod || e.altKey) {
      return;
    } else if (key === " ") {
      if (!S.hover) return;
      S.space = true;
      stage.classList.add("panning");
    } else if (key === "a") {
      if (e.shiftKey) decide(S.fix ? "fix" : "accept", e.timeStamp);
      else if (S.fix) say("Fixing: Shift+A accepts the corrected label, Esc cancels the fix.");
      else decide("accept", e.timeStamp);
    } else if (key === "x") decide("reject", e.timeStamp);
    else if (key === "s") skip(e.timeStamp);
    else if (key === "f") startFix(S.sel ? S.sel.person : 0);
    else if (key === "u") undoDecision();
    else if (key === "v" || key === "i") cycleVisibility();
    else if (key === "Escape") {
      if (S.fix) cancelFix();
      else if (S.sel) { S.sel = null; draw(); }
      else handled = false;
    } else if (key >= "1" && key <= "9" && e.code !== "Space") toggleReason(+key - 1);
    else if (key === "+" || key === "=") zoomAt(1.25);
    else if (key === "-" || key === "_") zoomAt(0.8);
    else if (key === "0") resetView();
    else if (key === "l") { S.showLabels = !S.showLabels; render(); }
    else if (key === "t") { S.showTeacher = !S.showTeacher; render(); }
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }
  function onKeyUp(e) {
    if (e.key === " " && S.space) {
      S.space = false;
      stage.classList.remove("panning");
    }
  }
  window.addEventListener("keydown", onKey, true);
  window.addEventListener("keyup", onKeyUp, true);
  const onResize = () => { S.height = 0; layout(); draw(); };
  window.addEventListener("resize", onResize);

  c.cleanup = () => {
    clearInterval(resend);
    window.removeEventListener("keydown", onKey, true);
    window.removeEventListener("keyup", onKeyUp, true);
    window.removeEventListener("resize", onResize);
  };
  return c;
}
