// hs's stage: the page hs play --to browser serves. Plain JavaScript, no library, no build step.
//
// What comes: one WebSocket (/ws), read-only. Each frame is {"now": the stage's clock in ms,
// "m": [messages]}; the first message after connecting is a "hello". Notes carry the score's
// columns (time_ns, kind, attempt, client, client_port, server, server_port, outcome, delays),
// "at" (when hs has them due, on the stage's clock) and "pan".
//
// How it keeps time: a score's notes come about a second before they are due. The stage's clock
// is mapped to this page's (performance.now) once, from the first frame's arrival, and each note
// is drawn, and its sound scheduled on the AudioContext clock, at its deadline through that one
// mapping: onsets keep the score's spacing to the sample, whatever the network's jitter. The
// AudioContext clock is mapped to the page's once too, when the sound starts (its output
// timestamp, so the sound is heard when the arrow is drawn). Live, a note is drawn and sounded as
// it comes, or, with "slow", queued and played stretched behind real time.
//
// Test hooks (kept stable: tools outside hs read them): window.hsStage.notes, every note drawn,
// in order, each at least {kind, attempt}; window.hsStage.onsets, the AudioContext start time of
// every sound scheduled, in seconds; the sound button's id is "sound".
"use strict";

(() => {
  const KINDS = ["syn", "syn-retry", "syn-ack", "syn-ack-retry", "ack", "rst"];
  const LABEL = {"syn": "SYN", "syn-retry": "SYN (retry)", "syn-ack": "SYN-ACK", "syn-ack-retry": "SYN-ACK (retry)",
                 "ack": "ACK", "rst": "RST"};
  const KIND_COLOURS = {"syn": "#1f5fb4", "syn-retry": "#6fa8dc", "syn-ack": "#7b3fa0", "syn-ack-retry": "#c39bd3",
                        "ack": "#0f9fb0", "rst": "#8b1a1a"};
  const OUTCOME_COLOURS = {complete: "#1a9e3a", refused: "#d62728", unanswered: "#7f7f7f", incomplete: "#ff8c00",
                           pending: "#4a6fa5"};
  const OUTCOMES = ["complete", "refused", "unanswered", "incomplete", "pending"];

  const LEAD_MS = 50;          // a score plays this much behind hs, besides the first frame's transit
  const FAST_PER_S = 20;       // handshakes a second past which the density view takes over, the sound thins
  const CALM_PER_S = 10;       // ... and under which, for CALM_MS, the sequence comes back
  const CALM_MS = 3000;
  const THIN_GAP_MS = 150;     // thinned, at most one handshake's sound begins in this long
  const MAX_ROWS = 1500;       // rows kept in the sequence view (older ones leave the page)
  const MAX_NOTES = 200000;    // hsStage.notes beyond this forgets its oldest half (hsStage.forgotten)
  const MAX_SLOW = 10000;      // notes the slow queue holds; past that the oldest are skipped
  const SLOW_LEAD_MS = 100;    // slow: a burst starts this far ahead, so its notes keep their spacing
  const SLOW_MAX_GAP_MS = 2000; // slow: no silence is stretched past this
  const KEEP = 10000;          // delays kept for the medians (the latest)
  const DENSITY_S = 60;        // the density view's window

  const $ = (id) => document.getElementById(id);
  const S = window.hsStage = {
    notes: [], onsets: [], forgotten: 0,
    connected: false, mode: null, session: null, view: "sequence", stopped: false,
    soundReady: false, late: 0, thinnedNotes: 0, skipped: 0,
  };

  // ---------------------------------------------------------------- formatting

  function duration(ns) {  // as hs plot says it: 850 ns, 12.2 µs, 3.41 ms, 1.20 s
    const a = Math.abs(ns);
    if (a < 1e3) return `${ns.toFixed(0)} ns`;
    if (a < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
    if (a < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
    if (a < 600e9) return `${(ns / 1e9).toFixed(2)} s`;
    if (a < 7200e9) return `${(ns / 60e9).toFixed(1)} min`;
    if (a < 172800e9) return `${(ns / 3600e9).toFixed(1)} h`;
    return `${(ns / 86400e9).toFixed(1)} days`;
  }
  const bracketed = (host) => (host.includes(":") ? `[${host}]` : host);
  const endpoint = (host, port) => (host ? `${bracketed(host)}:${port}` : "");

  function median(values) {
    if (!values.length) return null;
    const s = Float64Array.from(values).sort();
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  function element(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---------------------------------------------------------------- the clocks

  let offset = null;       // page ms = stage ms + offset: set from a session's first frame
  let audioOffset = null;  // AudioContext s = page ms / 1000 + audioOffset: set when the sound starts
  const transits = [];     // the latest frames' arrival minus their stage time, ms

  function anchor(frame, arrived) {
    offset = arrived - frame.now + LEAD_MS;
    transits.length = 0;
  }

  function redoAnchors(frame, arrived) {
    // Over hours, this machine's clock and a remote hs's, or the sound card's and this page's,
    // drift apart. At a silence (nothing waiting to be drawn or heard), a mapping that has drifted
    // is taken again: the spacing of notes already planned is never touched.
    transits.push(arrived - frame.now);
    if (transits.length > 32) transits.shift();
    if (pending.length || offset === null) return;
    const best = Math.min(...transits) + LEAD_MS;
    if (Math.abs(best - offset) > 20) offset = best;
    if (S.soundReady && !audio.scheduled.some((s) => s.t > audio.ctx.currentTime)) {
      const before = audioOffset;
      anchorAudio();
      if (Math.abs(audioOffset - before) <= 0.010) audioOffset = before;
    }
  }

  // ---------------------------------------------------------------- the sound

  const audio = {ctx: null, master: null, buffers: null, muted: false, volume: 0.8, scheduled: []};

  async function startSound() {
    const button = $("sound");
    if (audio.ctx) return;
    button.disabled = true;
    button.textContent = "starting sound…";
    const ctx = audio.ctx = new AudioContext({latencyHint: "interactive"});
    audio.master = ctx.createGain();
    audio.master.connect(ctx.destination);
    setVolume();
    try {
      await ctx.resume();
      const response = await fetch(`/sounds/${ctx.sampleRate}`);
      if (!response.ok) throw new Error(`the sounds: ${response.status}`);
      audio.buffers = readSounds(await response.arrayBuffer(), ctx);
      while (ctx.currentTime === 0) await new Promise((done) => setTimeout(done, 20));  // the clock has begun
      anchorAudio();
    } catch (e) {
      button.textContent = "no sound";
      button.title = String(e);
      return;
    }
    S.soundReady = true;
    button.textContent = "♪ sound on";
    button.classList.add("on");
    $("mute").disabled = false;
    for (const note of pending) if (!note.silent) sound(note);  // notes waiting to be drawn
  }

  function anchorAudio() {
    // its output timestamp pairs a context time with the page time that sample is heard:
    // a sound scheduled through it is heard when its arrow is drawn
    const ctx = audio.ctx;
    const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
    if (ts && ts.performanceTime > 0 && ts.contextTime > 0) {
      audioOffset = ts.contextTime - ts.performanceTime / 1000;
    } else {
      audioOffset = ctx.currentTime + (ctx.outputLatency || ctx.baseLatency || 0) - performance.now() / 1000;
    }
  }

  function readSounds(bytes, ctx) {
    // hs render's waveform of each kind at this sample rate: uint32 count, lengths, float32 samples
    const head = new DataView(bytes);
    const count = head.getUint32(0, true);
    const buffers = {};
    let at = 4 * (1 + count);
    for (let k = 0; k < count; k++) {
      const n = head.getUint32(4 * (1 + k), true);
      const samples = new Float32Array(bytes, at, n);
      const buffer = ctx.createBuffer(1, Math.max(n, 1), ctx.sampleRate);
      buffer.copyToChannel(samples, 0);
      buffers[KINDS[k]] = buffer;
      at += 4 * n;
    }
    return buffers;
  }

  function setVolume() {
    if (audio.master) audio.master.gain.value = audio.muted ? 0 : audio.volume;
  }

  function sound(note) {
    // schedule the note's sound on the AudioContext clock at its deadline
    if (!S.soundReady || note.onset !== null || note.silent) return;
    const ctx = audio.ctx;
    let t = note.due / 1000 + audioOffset;
    if (t < ctx.currentTime) {
      if (!note.live) return;  // a score's note whose moment has passed is not sounded late
      t = ctx.currentTime;
    }
    const source = ctx.createBufferSource();
    source.buffer = audio.buffers[note.kind];
    const pan = ctx.createStereoPanner();  // equal power, as hs render places each client host
    pan.pan.value = note.pan || 0;
    source.connect(pan).connect(audio.master);
    source.start(t);
    note.onset = t;
    S.onsets.push(t);
    audio.scheduled.push({source, t});
    source.onended = () => { source.disconnect(); pan.disconnect(); };
    if (audio.scheduled.length > 4096) audio.scheduled = audio.scheduled.filter((s) => s.t > ctx.currentTime);
  }

  function cancelSounds(afterPageMs) {
    if (!audio.ctx) return;
    const after = afterPageMs / 1000 + audioOffset;
    for (const s of audio.scheduled) if (s.t > after) s.source.stop();
    audio.scheduled = audio.scheduled.filter((s) => s.t <= after);
  }

  // ---------------------------------------------------------------- thinning: sound whole handshakes, fewer

  const starts = [];         // the due times of the latest attempts' first notes (one second's worth)
  const chosen = new Map();  // attempt key -> whether its notes sound (when thinned)
  let lastChosen = -Infinity;
  let thinning = false;

  function rateAt(note, first) {
    // handshakes begun in the second up to this note, in the page's time
    if (first) starts.push(note.due);
    while (starts.length && starts[0] <= note.due - 1000) starts.shift();
    return starts.length;
  }

  function decideSilence(note) {
    let sounds = chosen.get(note.key);
    note.rate = rateAt(note, sounds === undefined);
    thinning = note.rate > FAST_PER_S;
    if (sounds === undefined) {
      sounds = !thinning || note.due - lastChosen >= THIN_GAP_MS;
      if (sounds) lastChosen = note.due;
      chosen.set(note.key, sounds);
      if (chosen.size > 8192) chosen.delete(chosen.keys().next().value);
    }
    if (!sounds && !note.silent) S.thinnedNotes += 1;
    note.silent = note.silent || !sounds;
  }

  // ---------------------------------------------------------------- what comes from hs

  const pending = [];      // notes waiting for their moment, by due time
  let timer = null;
  let slow = null;         // live, slowed: {last: {due, t}}, the latest note queued
  const seen = new Map();  // attempt key -> what the page knows of the attempt

  function connect() {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onopen = () => { S.connected = true; };
    ws.onmessage = (event) => {
      const arrived = performance.now();
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      receive(frame, arrived);
    };
    ws.onclose = () => {
      S.connected = false;
      status(S.stopped ? "hs has stopped; waiting for it to start again" : "hs is not there; trying again", "off");
      setTimeout(connect, 2000);
    };
  }

  function receive(frame, arrived) {
    let history = false;   // the notes a late viewer is given first: drawn at once, silently
    const live = [];
    if (offset !== null && frame.m.length && frame.m[0].type !== "hello") redoAnchors(frame, arrived);
    for (const m of frame.m) {
      if (m.type === "hello") {
        hello(m);
        anchor(frame, arrived);
        history = true;
      } else if (m.type === "note") {
        const note = take(m, arrived, history);
        if (note.live && !slow) live.push(note);
        else queue(note);
      } else if (m.type === "stop") {
        stop(m);
      } else if (m.type === "countdown") {
        countdown(m.seconds);
      } else if (m.type === "origin") {
        S.startNs = m.start_ns;
      }
    }
    if (live.length) draw(live);
    pump();
  }

  function hello(m) {
    if (S.session !== null && m.session !== S.session && S.notes.length) mark("hs started again");
    if (m.session !== S.session) { seen.clear(); chosen.clear(); gaps.length = 0; lastT = null; lastPass = null; }
    S.session = m.session;
    S.mode = m.mode;
    S.startNs = m.start_ns;
    S.stopped = m.stopped;
    $("title").textContent = m.title || "";
    $("slow").disabled = m.mode !== "live";
    status(m.stopped ? "hs has stopped" : m.mode === "live" ? "live: the network as it happens"
           : m.mode === "score" ? `playing a score of ${m.notes.toLocaleString()} notes` : "hs is getting ready", "on");
  }

  function take(m, arrived, history) {
    const live = m.live;
    const note = {
      i: m.i, pass: m.pass, kind: m.kind, attempt: m.attempt, time_ns: m.time_ns,
      client: m.client, client_port: m.client_port, server: m.server, server_port: m.server_port,
      outcome: m.outcome, syn_to_syn_ack_ns: m.syn_to_syn_ack_ns, syn_ack_to_ack_ns: m.syn_ack_to_ack_ns,
      pan: m.pan, caller: m.caller || null, live, at: m.at,
      key: `${S.session}:${m.pass}:${m.attempt}`, due: 0, onset: null, silent: history, drawn: null, wall: null,
      arrived,
    };
    if (live) {
      note.due = arrived;
      if (slow) {
        // each gap stretched (at most SLOW_MAX_GAP_MS, as --max-gap does), after the note before
        // it; caught up, the next one starts a little ahead, so the notes of one burst keep theirs
        const last = slow.last;
        const after = last ? last.due + Math.min((note.time_ns - last.t) / 1e6 * factor(), SLOW_MAX_GAP_MS) : -Infinity;
        note.due = after >= arrived ? after : arrived + SLOW_LEAD_MS;
        slow.last = {due: note.due, t: note.time_ns};
      }
    } else {
      note.due = m.at + offset;
      if (note.due < arrived && !history) {
        // came after its moment (a machine too busy, a network too slow): play on from here,
        // as far behind as it came late, and say so
        S.late += 1;
        offset += arrived - note.due + LEAD_MS;
        note.due = m.at + offset;
        status(`${S.late.toLocaleString()} note${S.late > 1 ? "s" : ""} came late; playing ${(offset).toFixed(0)} ms behind hs`, "on");
      }
    }
    decideSilence(note);
    if (!history) sound(note);
    return note;
  }

  function queue(note) {
    if (pending.length >= MAX_SLOW && slow) { pending.shift(); S.skipped += 1; }
    if (pending.length && pending[pending.length - 1].due > note.due) {
      let k = pending.length;
      while (k > 0 && pending[k - 1].due > note.due) k--;
      pending.splice(k, 0, note);
    } else {
      pending.push(note);
    }
  }

  function pump() {
    // draw every note whose moment has come, then sleep until the next one's
    if (timer !== null) { clearTimeout(timer); timer = null; }
    const now = performance.now();
    let k = 0;
    while (k < pending.length && pending[k].due <= now + 1) k++;
    if (k) draw(pending.splice(0, k));
    if (pending.length) timer = setTimeout(pump, Math.max(0, pending[0].due - performance.now()));
  }

  function stop(m) {
    S.stopped = true;
    if (offset !== null) {
      const at = m.at + offset;
      for (let k = pending.length - 1; k >= 0; k--) if (!pending[k].live && pending[k].due > at) pending.splice(k, 1);
      cancelSounds(at);
    }
    status("hs has stopped", "off");
  }

  function countdown(seconds) {
    const box = $("countdown");
    box.hidden = false;
    box.innerHTML = "";
    box.append(element("span", "", `starting in ${seconds}…`));
    if (!S.soundReady) box.append(element("small", "", "press ▶ Start sound to hear it"));
    setTimeout(() => { box.hidden = true; }, 1100);
  }

  function status(text, state) {
    const e = $("status");
    e.textContent = text;
    e.className = `status ${state || ""}`;
  }

  // ---------------------------------------------------------------- drawing

  const rows = $("rows");
  const gaps = [];       // the latest gaps between notes, for what counts as a long one
  let lastT = null;
  let lastPass = null;
  let following = true;  // the view scrolls with the notes unless the reader scrolled up
  let calmSince = null;
  const counts = {complete: 0, refused: 0, unanswered: 0, incomplete: 0, pending: 0};
  const delays = {d1: [], d2: []};
  const callers = new Set();

  function draw(notes) {
    const now = performance.now();
    const wall = performance.timeOrigin + now;
    const fragment = document.createDocumentFragment();
    for (const note of notes) {
      note.drawn = now;
      note.wall = wall;
      const state = settle(note);
      chooseView(note, now);
      density.add(note, state);
      if (S.view === "sequence") row(note, state, fragment);
      else lastT = note.time_ns;
      remember(note);
      if (note.caller) caller(note.caller);
    }
    if (fragment.childNodes.length) {
      rows.append(fragment);
      while (rows.childElementCount > MAX_ROWS) rows.firstElementChild.remove();
      if (following) rows.scrollTop = rows.scrollHeight;
      else $("follow").hidden = false;
    }
    const painted = notes;
    requestAnimationFrame(() => {
      const t = performance.timeOrigin + performance.now();
      for (const note of painted) note.hook.painted = t;
    });
    tallyLater();
  }

  function remember(note) {
    // the test hook: every note drawn, in order
    note.hook = {
      i: note.i, pass: note.pass, kind: note.kind, attempt: note.attempt, time_ns: note.time_ns,
      client: note.client, client_port: note.client_port, server: note.server, server_port: note.server_port,
      outcome: note.outcome, due: note.due, arrived: note.arrived, drawn: note.drawn, wall: note.wall, painted: null,
      onset: note.onset,
      silent: note.silent, view: S.view,
    };
    S.notes.push(note.hook);
    if (S.notes.length > MAX_NOTES) {
      S.forgotten += MAX_NOTES / 2;
      S.notes.splice(0, MAX_NOTES / 2);
    }
  }

  function settle(note) {
    // what the page knows of the note's attempt: its outcome (live: once a note settles it) and delays
    let a = seen.get(note.key);
    const first = a === undefined;
    if (first) {
      a = {outcome: note.outcome || "pending", syn: null, synAck: null, last: null, rows: [], bin: null};
      seen.set(note.key, a);
      if (seen.size > 50000) seen.delete(seen.keys().next().value);
      counts[a.outcome] += 1;
    }
    const t = note.time_ns;
    const k = note.kind;
    let delay = null;
    if (k === "syn-ack") {
      delay = note.syn_to_syn_ack_ns !== null ? note.syn_to_syn_ack_ns : a.syn !== null ? t - a.syn : null;
      if (delay !== null && a.synAck === null) delays.d1.push(delay);
    } else if (k === "ack") {
      delay = note.syn_ack_to_ack_ns !== null ? note.syn_ack_to_ack_ns : a.synAck !== null ? t - a.synAck : null;
      if (delay !== null) delays.d2.push(delay);
    }
    const previous = a.last;
    if ((k === "syn" || k === "syn-retry") && a.syn === null) a.syn = t;
    if ((k === "syn-ack" || k === "syn-ack-retry") && a.synAck === null) a.synAck = t;
    a.last = t;
    if (note.live && a.outcome === "pending" && (k === "ack" || k === "rst")) {
      const outcome = k === "ack" ? "complete" : a.synAck === null ? "refused" : "incomplete";
      counts.pending -= 1;
      counts[outcome] += 1;
      density.settle(a, outcome);
      a.outcome = outcome;
      for (const r of a.rows) r.className = r.className.replace("pending", outcome);
    }
    note.outcome = a.outcome;
    for (const d of [delays.d1, delays.d2]) if (d.length > KEEP * 1.5) d.splice(0, d.length - KEEP);
    return {attempt: a, first, delay, previous};
  }

  function row(note, state, fragment) {
    const {attempt: a, first, delay, previous} = state;
    if (lastPass !== null && note.pass !== lastPass) fragment.append(markRow(`pass ${note.pass}`));
    else if (lastT !== null) {
      const gap = note.time_ns - lastT;
      const typical = gaps.length ? median(gaps) : 0;
      if (gaps.length >= 3 && gap > Math.max(4 * typical, 100e3)) fragment.append(gapRow(`${duration(gap)} later`));
      gaps.push(gap);
      if (gaps.length > 64) gaps.shift();
    }
    lastPass = note.pass;
    lastT = note.time_ns;

    const k = note.kind;
    const back = k === "syn-ack" || k === "syn-ack-retry" || (k === "rst" && a.outcome === "refused");
    const r = element("div", `row note ${a.outcome}`);
    r.dataset.kind = k;
    r.dataset.attempt = note.attempt;
    r.append(element("span", "t", (note.time_ns / 1e9).toFixed(6)));
    const who = first ? `#${note.attempt}  ${endpoint(note.client, note.client_port)}` : `#${note.attempt}`;
    r.append(element("span", "who c", who));
    const lane = element("span", "lane");
    const arrow = element("button", `arrow ${back ? "left" : "right"}${k.endsWith("retry") ? " retry" : ""}`);
    arrow.type = "button";
    arrow.append(element("span", "shaft"));
    let label = LABEL[k];
    if (k === "syn-ack" && delay !== null) label += `  (${duration(delay)} after SYN)`;
    else if (k === "ack" && delay !== null) label += `  (${duration(delay)} after SYN-ACK)`;
    else if (previous !== null) label += `  (+${duration(note.time_ns - previous)})`;
    arrow.append(element("span", "label", label));
    if (k === "rst") arrow.append(element("span", "cross", "✕"));
    arrow.addEventListener("click", () => details(note, delay, arrow));
    lane.append(arrow);
    r.append(lane);
    const server = first ? endpoint(note.server, note.server_port) : "";
    const unanswered = a.outcome === "unanswered" && first ? "  no answer" : "";
    r.append(element("span", "who s", server + unanswered));
    a.rows.push(r);
    if (a.rows.length > 16) a.rows.shift();
    fragment.append(r);
  }

  function gapRow(text) {
    // a dotted line across, the lifelines going on through it, and how long the silence was
    const r = element("div", "row gap");
    const lane = element("span", "lane");
    lane.append(element("span", "later", text));
    r.append(element("span", "t"), element("span", "who c"), lane, element("span", "who s"));
    return r;
  }

  function markRow(text) {
    const r = gapRow(text);
    r.className = "row mark";
    return r;
  }

  function mark(text) { rows.append(markRow(text)); }

  rows.addEventListener("scroll", () => {
    following = rows.scrollTop + rows.clientHeight >= rows.scrollHeight - 40;
    if (following) $("follow").hidden = true;
  });
  $("follow").addEventListener("click", () => { following = true; rows.scrollTop = rows.scrollHeight; $("follow").hidden = true; });

  // ---------------------------------------------------------------- the tally, the callers

  let tallyTimer = null;
  function tallyLater() {
    if (tallyTimer === null) tallyTimer = setTimeout(tally, 250);
  }

  function tally() {
    tallyTimer = null;
    for (const o of OUTCOMES) $(`n-${o}`).textContent = counts[o].toLocaleString();
    $("waiting").hidden = counts.pending === 0;
    const d1 = median(delays.d1.slice(-KEEP));
    const d2 = median(delays.d2.slice(-KEEP));
    const parts = [];
    if (d1 !== null) parts.push(`SYN→SYN-ACK median ${duration(d1)}`);
    if (d2 !== null) parts.push(`SYN-ACK→ACK median ${duration(d2)}`);
    $("delays").textContent = parts.join("   ");
    const thin = $("thinned");
    thin.hidden = !thinning;
    if (thinning) thin.textContent = `sound thinned: ${starts.length} handshakes/s is too fast to hear; ` +
                                     `one in ${Math.max(1, Math.round(starts.length * THIN_GAP_MS / 1000))} sounds`;
    if (slow && pending.length) {
      $("lag").textContent = `${((slow.last.due - performance.now()) / 1000).toFixed(1)} s behind, ` +
                             `${pending.length.toLocaleString()} waiting` + (S.skipped ? `, ${S.skipped.toLocaleString()} skipped` : "");
      tallyLater();
    } else {
      $("lag").textContent = slow ? "caught up" : "";
    }
    if (S.view === "density") density.paint();
  }

  function caller(text) {
    const key = text.replace(/\s*\(.*\)$/, "");
    if (callers.has(key)) return;
    callers.add(key);
    $("callers").hidden = false;
    $("caller-list").append(element("li", "", text));
  }

  // ---------------------------------------------------------------- the packet, explained

  const EXPLAIN = {
    "syn": {flags: "SYN", seq: "x  (the client's initial sequence number, ISN, picked at random)", ack: "not set",
            says: "The client asks to open a connection, and says where its count of bytes starts (x)."},
    "syn-retry": {flags: "SYN", seq: "x  (the same ISN: the same attempt)", ack: "not set",
                  says: "No answer came in time, so the client sends its SYN again; it waits twice as long each time (1 s, 2 s, 4 s…)."},
    "syn-ack": {flags: "SYN, ACK", seq: "y  (the server's own ISN)", ack: "x + 1  (client ISN + 1)",
                says: "The server accepts: it acknowledges the client's SYN (x + 1: the next byte it expects) and sends its own starting number y."},
    "syn-ack-retry": {flags: "SYN, ACK", seq: "y  (the same ISN)", ack: "x + 1  (client ISN + 1)",
                      says: "The server sends its SYN-ACK again: the client's ACK did not reach it (or the client's SYN came again)."},
    "ack": {flags: "ACK", seq: "x + 1", ack: "y + 1  (server ISN + 1)",
            says: "The client acknowledges the server's SYN: both sides now know each other's numbers, and the connection is open."},
    "rst": {flags: "RST (with ACK)", seq: "0", ack: "x + 1  (client ISN + 1)",
            says: "A reset: the attempt ends here."},
  };

  function details(note, delay, arrow) {
    for (const e of document.querySelectorAll(".arrow.chosen")) e.classList.remove("chosen");
    arrow.classList.add("chosen");
    const e = EXPLAIN[note.kind];
    const back = arrow.classList.contains("left");
    const a = seen.get(note.key);
    const outcome = a ? a.outcome : note.outcome;
    let says = e.says;
    if (note.kind === "rst") {
      says = outcome === "refused"
        ? "The server refuses: nothing listens on that port (or a firewall answers for it). The client gives up at once."
        : "A reset ends the attempt before it was complete: one side gave up on it.";
    }
    const from = back ? endpoint(note.server, note.server_port) : endpoint(note.client, note.client_port);
    const to = back ? endpoint(note.client, note.client_port) : endpoint(note.server, note.server_port);
    const body = $("details-body");
    body.innerHTML = "";
    body.append(element("h3", outcome, `${LABEL[note.kind]}  · handshake #${note.attempt}`));
    const dl = element("dl");
    const field = (name, value) => { dl.append(element("dt", "", name), element("dd", "", value)); };
    field("from", `${from}${back ? "  (server)" : "  (client)"}`);
    field("to", `${to}${back ? "  (client)" : "  (server)"}`);
    field("flags", e.flags);
    field("seq", e.seq);
    field("ack", e.ack);
    if (delay !== null) field("delay", `${duration(delay)} after the ${note.kind === "ack" ? "SYN-ACK" : "SYN"}`);
    field("time", `${(note.time_ns / 1e9).toFixed(6)} s after the start`);
    field("handshake", outcome === "pending" ? "not settled yet" : outcome);
    dl.lastChild.className = outcome;
    body.append(dl);
    body.append(element("p", "", says));
    $("details").hidden = false;
  }
  $("details-close").addEventListener("click", () => { $("details").hidden = true; });

  // ---------------------------------------------------------------- the views

  function chooseView(note, now) {
    const asked = $("view").value;
    let view = S.view;
    if (asked !== "auto") view = asked;
    else if (note.rate > FAST_PER_S) { view = "density"; calmSince = null; }
    else if (S.view === "density" && note.rate < CALM_PER_S) {
      if (calmSince === null) calmSince = now;
      if (now - calmSince >= CALM_MS) view = "sequence";
    } else calmSince = null;
    if (view !== S.view) showView(view, note.rate);
  }

  function showView(view, rate) {
    if (view === "sequence" && S.view === "density") {
      const missed = density.sinceShown;
      if (missed) rows.append(markRow(`${missed.toLocaleString()} notes shown in the density view`));
    }
    S.view = view;
    $("sequence").hidden = view !== "sequence";
    $("density").hidden = view !== "density";
    if (view === "density") {
      density.sinceShown = 0;
      $("density-why").textContent = rate > FAST_PER_S
        ? `${rate} handshakes a second: too fast to follow one by one, so here is their density.`
        : "The density view: notes and handshakes per second, and how long the answers took.";
      density.paint();
    }
  }

  $("view").addEventListener("change", () => {
    const asked = $("view").value;
    calmSince = null;
    if (asked !== "auto") showView(asked, 0);
  });

  // notes per second by kind, handshakes begun per second by outcome, and the two delays'
  // histograms: hs plot's density view, over the last minute, as the notes come
  const density = {
    seconds: new Map(),  // whole page second -> {kinds: {kind: n}, outcomes: {outcome: n}}
    d1: new Array(48).fill(0), d2: new Array(48).fill(0),
    sinceShown: 0,
    bin(due) {
      const s = Math.floor(due / 1000);
      let b = this.seconds.get(s);
      if (!b) {
        b = {kinds: {}, outcomes: {}};
        this.seconds.set(s, b);
        for (const old of this.seconds.keys()) { if (old < s - 2 * DENSITY_S) this.seconds.delete(old); else break; }
      }
      return b;
    },
    add(note, state) {
      const b = this.bin(note.due);
      b.kinds[note.kind] = (b.kinds[note.kind] || 0) + 1;
      if (state.first) {
        b.outcomes[state.attempt.outcome] = (b.outcomes[state.attempt.outcome] || 0) + 1;
        state.attempt.bin = b;
      }
      if (state.delay !== null && state.delay > 0) {
        const slot = Math.max(0, Math.min(47, Math.floor((Math.log10(state.delay) - 3) * 6)));  // 1 µs .. 100 s
        (note.kind === "ack" ? this.d2 : this.d1)[slot] += 1;
      }
      if (S.view === "density") this.sinceShown += 1;
    },
    settle(a, outcome) {
      if (!a.bin) return;
      a.bin.outcomes.pending -= 1;
      a.bin.outcomes[outcome] = (a.bin.outcomes[outcome] || 0) + 1;
    },
    paint() {
      const canvas = $("density-canvas");
      const ratio = window.devicePixelRatio || 1;
      const w = canvas.clientWidth, h = canvas.clientHeight;
      if (!w || !h) return;
      canvas.width = w * ratio;
      canvas.height = h * ratio;
      const g = canvas.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, w, h);
      g.font = "14px system-ui, sans-serif";
      const now = Math.floor(performance.now() / 1000);
      const secs = [];
      for (let s = now - DENSITY_S + 1; s <= now; s++) secs.push(this.seconds.get(s) || {kinds: {}, outcomes: {}});
      const third = (h - 20) / 3;
      this.lines(g, 0, w, third, secs);
      this.bars(g, third + 10, w, third, secs);
      this.histograms(g, 2 * third + 20, w, third);
    },
    frame(g, y, w, h, title) {
      g.strokeStyle = "#c8ced8";
      g.strokeRect(40.5, y + 20.5, w - 50, h - 40);
      g.fillStyle = "#1d2330";
      g.fillText(title, 44, y + 14);
    },
    lines(g, y, w, h, secs) {
      this.frame(g, y, w, h, `notes per second by kind, the last ${DENSITY_S} s`);
      const top = Math.max(1, ...secs.map((b) => Math.max(0, ...Object.values(b.kinds))));
      const x = (i) => 41 + (w - 52) * i / (secs.length - 1);
      const yv = (v) => y + h - 21 - (h - 44) * v / top;
      let legend = 44;
      for (const k of KINDS) {
        if (!secs.some((b) => b.kinds[k])) continue;
        g.strokeStyle = g.fillStyle = KIND_COLOURS[k];
        g.lineWidth = 2;
        g.beginPath();
        secs.forEach((b, i) => (i ? g.lineTo(x(i), yv(b.kinds[k] || 0)) : g.moveTo(x(i), yv(b.kinds[k] || 0))));
        g.stroke();
        const text = LABEL[k];
        g.fillText(text, w - 10 - g.measureText(text).width, y + 36 + 16 * KINDS.indexOf(k));
        legend += 1;
      }
      g.fillStyle = "#6b7280";
      g.fillText(String(top), 4, y + 30);
    },
    bars(g, y, w, h, secs) {
      this.frame(g, y, w, h, "handshakes begun per second, by outcome");
      const total = (b) => OUTCOMES.reduce((n, o) => n + (b.outcomes[o] || 0), 0);
      const top = Math.max(1, ...secs.map(total));
      const bw = (w - 52) / secs.length;
      secs.forEach((b, i) => {
        let base = y + h - 21;
        for (const o of OUTCOMES) {
          const n = b.outcomes[o] || 0;
          if (!n) continue;
          const bh = (h - 44) * n / top;
          g.fillStyle = OUTCOME_COLOURS[o];
          g.fillRect(41 + i * bw, base - bh, Math.max(1, bw - 1), bh);
          base -= bh;
        }
      });
      g.fillStyle = "#6b7280";
      g.fillText(String(top), 4, y + 30);
    },
    histograms(g, y, w, h) {
      this.frame(g, y, w, h, "how long the answers took: SYN→SYN-ACK (purple), SYN-ACK→ACK (teal); 1 µs to 100 s, log scale");
      const top = Math.max(1, ...this.d1, ...this.d2);
      const bw = (w - 52) / 48;
      for (const [values, colour, shift] of [[this.d1, KIND_COLOURS["syn-ack"], 0], [this.d2, KIND_COLOURS.ack, bw / 2]]) {
        g.fillStyle = colour;
        values.forEach((n, i) => {
          if (!n) return;
          const bh = (h - 44) * n / top;
          g.fillRect(41 + i * bw + shift, y + h - 21 - bh, Math.max(1, bw / 2 - 1), bh);
        });
      }
      g.fillStyle = "#6b7280";
      ["1 µs", "1 ms", "1 s"].forEach((text, k) => g.fillText(text, 41 + bw * 18 * k, y + h - 4));
    },
  };
  window.addEventListener("resize", () => { if (S.view === "density") density.paint(); });

  // ---------------------------------------------------------------- the controls

  const factor = () => Number($("slow-factor").value);

  $("sound").addEventListener("click", startSound);
  $("mute").addEventListener("click", () => {
    audio.muted = !audio.muted;
    $("mute").setAttribute("aria-pressed", String(audio.muted));
    $("mute").textContent = audio.muted ? "Unmute" : "Mute";
    setVolume();
  });
  $("volume").addEventListener("input", () => { audio.volume = Number($("volume").value); setVolume(); });
  $("slow").addEventListener("change", () => {
    if ($("slow").checked) {
      slow = {last: null};
    } else {
      // back to real time: what waits is drawn at once, and its sounds, scheduled ahead, are cancelled
      slow = null;
      cancelSounds(performance.now());
      const waiting = pending.splice(0, pending.length);
      for (const note of waiting) note.silent = true;
      if (waiting.length) draw(waiting);
    }
    tallyLater();
  });

  connect();
})();
