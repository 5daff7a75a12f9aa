// dropgate's waiting room: enters the queue with the visitor's token, follows their
// place over Server-Sent Events (read with fetch, since EventSource cannot send an
// Authorization header and tokens must stay out of URLs), falls back to polling at
// the server's suggested interval, and shows the outcome the moment it arrives.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const meta = (name) => {
    const element = document.querySelector(`meta[name="${name}"]`);
    return element ? element.content : "";
  };

  const FINAL_STATES = new Set(["won", "lost", "sold_out", "expired", "closed"]);
  // Consecutive stream failures (no event received) before settling on polling.
  const STREAM_ATTEMPTS = 3;
  // The server sends a heartbeat every 15 s; silence this long means a stuck proxy.
  const STREAM_SILENCE_MS = 45000;
  const PARENT_WAIT_MS = 15000;

  const eventId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const api = new URL(`../v1/events/${encodeURIComponent(eventId)}/queue`, location.href).href;
  const devTokenUrl = new URL("../dev/token", location.href).href;
  const embedded = window.parent !== window;
  const allowedOrigins = new Set([location.origin, ...meta("dropgate-origins").split(/\s+/).filter(Boolean)]);
  const devLogin = meta("dropgate-dev-login") === "on";
  const storageKey = `dropgate:${eventId}`;

  let token = null;
  let parentOrigin = null;
  let lastEventId = null;
  let retryMs = 3000;
  let streamFailures = 0;
  let finished = false;
  let lastAnnounced = 0;
  // Bumped whenever the transport changes, so stale timers and streams stop.
  let generation = 0;
  let abortStream = null;
  let timer = null;

  // --- storage: sessionStorage keeps the token and progress baseline across a reload
  // of this tab only; it can be unavailable (privacy modes, sandboxed frames).
  const store = {
    get(key) {
      try { return sessionStorage.getItem(`${storageKey}:${key}`); } catch { return null; }
    },
    set(key, value) {
      try { sessionStorage.setItem(`${storageKey}:${key}`, value); } catch { /* best effort */ }
    },
    remove(key) {
      try { sessionStorage.removeItem(`${storageKey}:${key}`); } catch { /* best effort */ }
    },
  };

  // --- messages people read

  const TOKEN_PROBLEM = {
    title: "We couldn't confirm who you are",
    text: "Your sign-in was not accepted. Go back to the shop, sign in again and reopen the waiting room.",
  };
  const ERRORS = {
    missing_token: {
      title: "Please sign in first",
      text: "Open the waiting room from the shop's site, where you are signed in.",
    },
    malformed_token: TOKEN_PROBLEM,
    token_too_large: TOKEN_PROBLEM,
    wrong_algorithm: TOKEN_PROBLEM,
    unknown_key_id: TOKEN_PROBLEM,
    invalid_signature: TOKEN_PROBLEM,
    token_missing_expiry: TOKEN_PROBLEM,
    token_lifetime_too_long: TOKEN_PROBLEM,
    token_not_yet_valid: {
      title: "Your sign-in is not valid yet",
      text: "Check that your device's clock is right, then try again.",
    },
    wrong_issuer: TOKEN_PROBLEM,
    wrong_audience: TOKEN_PROBLEM,
    invalid_identity_claims: TOKEN_PROBLEM,
    token_expired: {
      title: "Your sign-in has expired",
      text: "Sign in again on the shop's site. You keep your place in line.",
    },
    invalid_event_id: {
      title: "This link is not valid",
      text: "Check the address of the waiting room and try again.",
    },
    unknown_event: {
      title: "We can't find this drop",
      text: "The link may be wrong or the drop may not be announced yet.",
    },
    platform_not_allowed: {
      title: "This drop is not open to your account",
      text: "It takes customers of other shops or apps only. Sign in where the drop was announced.",
    },
    event_closed: {
      title: "This drop has ended",
      text: "The waiting room is closed and no longer takes new visitors.",
    },
    event_sold_out: {
      title: "Sold out",
      text: "Everything in this drop is gone, so the waiting room no longer takes new visitors.",
    },
    malformed_body: {
      title: "Something went wrong",
      text: "The request was not understood. Reload the page to try again.",
    },
    internal: {
      title: "Something went wrong on our side",
      text: "Please try again in a moment.",
    },
    rate_limited: {
      title: "Too many attempts",
      text: "Please wait a few seconds, then try again.",
    },
    unavailable: {
      title: "The waiting room is busy",
      text: "Please try again in a moment. If you were in line, you keep your place.",
    },
    network: {
      title: "No connection",
      text: "Check your internet connection, then try again.",
    },
  };
  const RETRYABLE = new Set(["rate_limited", "unavailable", "too_many_streams", "internal", "network"]);

  const RESULTS = {
    won: ["You won!", "Congratulations: one is reserved for you. Follow the shop's instructions to complete your purchase."],
    lost: ["Not this time", "You were not drawn in this drop. Thank you for waiting."],
    sold_out: ["Sold out", "Everything was gone before your turn came. Thank you for waiting."],
    expired: ["Your place has expired", "You were away when your turn came, so your place passed to the next person."],
    closed: ["The drop has ended", "It closed before your turn came, so there was no draw for you. Thank you for waiting."],
  };

  // --- small view helpers

  const show = (id, visible) => { $(id).hidden = !visible; };
  const number = (n) => Number(n).toLocaleString();

  function formatEta(seconds) {
    if (seconds < 60) return "under a minute";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return minutes === 1 ? "about 1 minute" : `about ${minutes} minutes`;
    const hours = Math.floor(minutes / 60);
    const rest = minutes % 60;
    return rest ? `about ${hours} h ${rest} min` : `about ${hours} h`;
  }

  function notice(text) {
    $("notice").textContent = text || "";
    show("notice", Boolean(text));
  }

  function announce(text, urgent) {
    const region = $(urgent ? "announce-now" : "announce");
    // Cleared first so repeating the same sentence is still read out.
    region.textContent = "";
    window.setTimeout(() => { region.textContent = text; }, 50);
  }

  function setState(state) { $("room").dataset.state = state; }
  function setTransport(transport) { $("room").dataset.transport = transport; }

  function tellParent(message) {
    if (embedded && parentOrigin) {
      window.parent.postMessage({ ...message, event_id: eventId }, parentOrigin);
    }
  }

  function stopTransport() {
    generation += 1;
    if (abortStream) abortStream();
    abortStream = null;
    window.clearTimeout(timer);
  }

  // --- rendering a view from the API

  function isFinal(view) {
    return view.poll_after_ms === 0 || FINAL_STATES.has(view.state);
  }

  function render(view) {
    show("connecting", false);
    show("error", false);
    show("dev-login", false);
    notice("");
    $("ticket").textContent = number(view.ticket);
    $("result-ticket").textContent = number(view.ticket);
    setState(view.state);
    if (isFinal(view)) {
      finish(view);
      return;
    }
    show("waiting", true);
    const baselineKey = `baseline:${view.ticket}`;
    const baseline = Math.max(Number(store.get(baselineKey)) || 0, view.position);
    store.set(baselineKey, String(baseline));
    const progress = $("progress");
    if (view.state === "admitted") {
      $("position").textContent = "Now";
      $("eta").textContent = "any moment";
      $("phase").textContent = "It's your turn: the draw is running. Your result is coming.";
      progress.value = 100;
      progress.textContent = "100%";
      announce("It's your turn. The draw is running; your result is coming.");
    } else {
      const percent = baseline > 0 ? Math.round(((baseline - view.position) / baseline) * 100) : 0;
      $("position").textContent = number(view.position);
      $("eta").textContent = formatEta(view.eta_s);
      $("phase").textContent = view.position === 1
        ? "You're next."
        : `${number(view.position - 1)} ${view.position === 2 ? "person is" : "people are"} ahead of you.`;
      progress.value = percent;
      progress.textContent = `${percent}%`;
      // Screen readers hear the position now and then, not every second.
      const now = Date.now();
      if (now - lastAnnounced > 30000 || view.position === 1) {
        lastAnnounced = now;
        announce(`You are number ${number(view.position)} in line. Estimated wait ${formatEta(view.eta_s)}.`);
      }
    }
    tellParent({ type: "dropgate:position", state: view.state, ticket: view.ticket, position: view.position, eta_s: view.eta_s });
  }

  function finish(view) {
    finished = true;
    stopTransport();
    const outcome = (view.result && view.result.outcome) || view.state;
    const [title, text] = RESULTS[outcome] || RESULTS[view.state] || ["Done", "Your wait is over."];
    show("waiting", false);
    $("result-title").textContent = title;
    $("result-text").textContent = text;
    show("result", true);
    $("result").focus();
    announce(`${title}. ${text}`, true);
    tellParent({ type: "dropgate:result", state: view.state, outcome, ticket: view.ticket });
    offerCheck(outcome);
  }

  // --- "check my result": the visitor's own draw re-run in the browser from the
  // public fairness data (docs/fairness.md, rule dropgate/draw/v2), trusting nothing
  // the server computed.

  const fairnessUrl = new URL(`../v1/events/${encodeURIComponent(eventId)}/fairness`, location.href).href;
  const FAIRNESS_POLL_MS = 5000;
  const RULE = "dropgate/draw/v2";
  const encoder = new TextEncoder();
  let toldOutcome = null;
  let checkTimer = null;
  let decisionLogUrl = null;
  // The fairness record as served when the log appeared.
  let latestRecord = null;

  const hexOf = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const bytesOf = (hex) => Uint8Array.from(hex.match(/../g) || [], (pair) => parseInt(pair, 16));

  // The platform and user ids the token names: the identity the draw was keyed on.
  function identity(of = token) {
    try {
      const part = of.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const padded = part.padEnd(Math.ceil(part.length / 4) * 4, "=");
      const json = new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)));
      const claims = JSON.parse(json);
      if (typeof claims.platformId !== "string" || typeof claims.userId !== "string") return null;
      return { platform: claims.platformId, user: claims.userId };
    } catch {
      return null;
    }
  }

  // The rule's message: the domain tag, then each part as a 4-byte big-endian length
  // and its UTF-8 bytes.
  function ruleMessage(domain, parts) {
    const chunks = [encoder.encode(domain)];
    for (const part of parts) {
      const bytes = encoder.encode(part);
      const length = new Uint8Array(4);
      new DataView(length.buffer).setUint32(0, bytes.length, false);
      chunks.push(length, bytes);
    }
    const out = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  function offerCheck(outcome) {
    toldOutcome = outcome;
    $("check").hidden = false;
    if (decisionLogUrl) return;
    $("check-button").disabled = true;
    $("check-status").textContent = "You can check your result here once the drop has closed.";
    watchFairness();
  }

  async function watchFairness() {
    window.clearTimeout(checkTimer);
    try {
      const response = await fetch(fairnessUrl, { credentials: "omit", cache: "no-store" });
      const record = response.ok ? await response.json() : null;
      if (record && record.seed === null && !store.get("fairness-before-close")) {
        // What was public before the close: the check holds the log to it, not to the
        // log's own copy, which whoever serves the log could have changed with it.
        store.set("fairness-before-close", JSON.stringify(record));
      }
      if (record && typeof record.decision_log === "string") {
        latestRecord = record;
        // The API's paths are relative to its root, the page's parent.
        decisionLogUrl = new URL(`..${record.decision_log}`, location.href).href;
        $("check-button").disabled = false;
        $("check-status").textContent = "The drop has closed: you can check your result now.";
        return;
      }
      if (record && record.decision_log_status === "too_large") {
        $("check-status").textContent = "This drop's decision log is too large to check here; the organiser publishes it for download.";
        return;
      }
    } catch {
      // Offline for a moment: asked again below.
    }
    checkTimer = window.setTimeout(watchFairness, FAIRNESS_POLL_MS);
  }

  async function checkMyResult() {
    const box = $("check");
    const lines = [];
    const conclude = (passed, text) => {
      box.dataset.check = passed ? "pass" : "fail";
      $("check-status").textContent = text;
      $("check-details").replaceChildren(...lines.map((line) => {
        const item = document.createElement("li");
        item.textContent = line;
        return item;
      }));
      $("check-details").hidden = lines.length === 0;
      $("check-button").disabled = false;
      announce(text, true);
    };
    box.dataset.check = "running";
    $("check-button").disabled = true;
    $("check-status").textContent = "Checking…";
    try {
      if (!window.crypto || !crypto.subtle) {
        conclude(false, "This browser cannot run the check: it needs a secure (https) page.");
        return;
      }
      const who = identity();
      if (!who) {
        conclude(false, "Your sign-in does not name a platform and user id, so there is nothing to look up.");
        return;
      }
      const response = await fetch(decisionLogUrl, { credentials: "omit" });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        const code = (body && body.error && body.error.code) || `HTTP ${response.status}`;
        conclude(false, `The public decision log could not be fetched (${code}).`);
        return;
      }
      const log = await response.json();
      if (log.rule !== RULE) {
        conclude(false, `This drop follows rule ${log.rule}, which this page does not know.`);
        return;
      }
      // The parameters the log is held to: as this page saw them before the close if
      // it did, else as the server publishes them now (to compare with the
      // announcement made before the drop).
      const saved = store.get("fairness-before-close");
      const before = saved ? JSON.parse(saved) : latestRecord;
      const source = saved
        ? "the commitment this page saw before the drop closed"
        : "the commitment the server publishes (this page did not see it before the close: compare it with the one announced before the drop)";
      const threshold = BigInt(Math.floor(before.win_probability * 18446744073709551616));
      const beaconRound = before.beacon ? before.beacon.round : null;
      const logRound = log.beacon ? log.beacon.round : null;
      if (log.commitment !== before.commitment || log.stock_total !== before.stock_total
          || String(threshold) !== log.threshold || logRound !== beaconRound) {
        conclude(false, "The decision log's commitment or parameters differ from those published before the close.");
        return;
      }
      const seed = bytesOf(log.seed);
      const digest = hexOf(new Uint8Array(await crypto.subtle.digest("SHA-256", seed)));
      if (digest !== before.commitment) {
        conclude(false, `The revealed seed does not match ${source}.`);
        return;
      }
      lines.push(`The revealed seed matches ${source}: ${before.commitment}.`);
      const hmacKey = (bytes) => crypto.subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
      // With a beacon, its published value is mixed into the key every draw derives from.
      let keyBytes = seed;
      if (log.beacon && log.beacon.value) {
        const mixed = ruleMessage("dropgate/beacon/v2", [log.beacon.round, log.beacon.value]);
        keyBytes = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(seed), mixed));
        lines.push(`The draw mixes in beacon round ${log.beacon.round}; its value should match the beacon's published one: ${log.beacon.value.slice(0, 16)}….`);
      }
      const key = await hmacKey(keyBytes);
      const mac = async (message) => new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
      const mine = hexOf((await mac(ruleMessage("dropgate/pseudonym/v2", [log.event_id, who.platform, who.user]))).slice(0, 16));
      lines.push(`Your pseudonym in the public log: ${mine}.`);
      const drawValueOf = async (pseudonym) => {
        const bytes = await mac(ruleMessage("dropgate/draw/v2", [log.event_id, pseudonym]));
        return new DataView(bytes.buffer).getBigUint64(0, false);
      };

      const decisions = [...log.decisions].sort((a, b) => a.decision_order - b.decision_order);
      const myDecision = decisions.find((decision) => decision.pseudonym === mine);
      const myAnswer = (log.without_a_draw || []).find((told) => told.pseudonym === mine);
      if (!myDecision && !myAnswer) {
        conclude(false, "Your pseudonym is not in the public log.");
        return;
      }
      // Everyone decided before you (everyone, if you were not drawn) is re-run: the
      // stock left at your turn depends on them.
      const replayed = myDecision ? decisions.filter((d) => d.decision_order <= myDecision.decision_order) : decisions;
      const values = await Promise.all(replayed.map((decision) => drawValueOf(decision.pseudonym)));
      let stock = log.stock_total;
      let expected = null;
      for (let i = 0; i < replayed.length; i += 1) {
        const decision = replayed[i];
        if (decision.decision_order !== i + 1) {
          conclude(false, `The log's decision order has a gap at ${i + 1}.`);
          return;
        }
        const value = values[i];
        if (String(value) !== decision.draw_value) {
          conclude(false, `Decision ${decision.decision_order}'s draw value is not the one the rules give.`);
          return;
        }
        const outcome = stock === 0 ? "sold_out" : value < threshold ? "won" : "lost";
        if (outcome !== decision.outcome) {
          conclude(false, `Decision ${decision.decision_order} should be ${outcome}, and the log says ${decision.outcome}.`);
          return;
        }
        if (decision === myDecision) {
          expected = outcome;
          lines.push(`You were decided ${number(decision.decision_order)} of ${number(decisions.length)}, with ${number(stock)} of ${number(log.stock_total)} left.`);
          lines.push(`Your draw value ${value} is ${value < threshold ? "below" : "not below"} the winning threshold ${threshold}.`);
        }
        if (outcome === "won") stock -= 1;
      }
      if (!myDecision) {
        expected = myAnswer.state;
        if (expected === "sold_out" && stock !== 0) {
          conclude(false, `You were told sold out, but the log leaves ${number(stock)} unsold.`);
          return;
        }
        lines.push(`You were not drawn: ${myAnswer.state.replace("_", " ")} (ticket ${number(myAnswer.ticket)}).`);
      }
      if (expected !== toldOutcome) {
        conclude(false, `The log says ${expected.replace("_", " ")}, but this page was told ${String(toldOutcome).replace("_", " ")}.`);
        return;
      }
      conclude(true, `Checked: your result (${expected.replace("_", " ")}) follows from the published seed and the rules.`);
    } catch (error) {
      conclude(false, `The check could not be completed: ${error && error.message ? error.message : error}.`);
    }
  }

  $("check-button").addEventListener("click", checkMyResult);

  function fail(code, retry) {
    const known = ERRORS[code] || {
      title: "Something went wrong",
      text: "Please reload the page to try again.",
    };
    show("connecting", false);
    show("waiting", false);
    notice("");
    $("error-title").textContent = known.title;
    $("error-text").textContent = known.text;
    $("error-code").textContent = code;
    show("error", true);
    setState("error");
    const button = $("retry");
    button.hidden = !retry;
    button.onclick = retry || null;
  }

  // --- talking to the API

  async function call(method, suffix) {
    try {
      const response = await fetch(api + suffix, {
        method,
        headers: { Authorization: `Bearer ${token}` },
        cache: "no-store",
        credentials: "omit",
      });
      const body = await response.json().catch(() => null);
      return { ok: response.ok, status: response.status, body, retryAfter: Number(response.headers.get("Retry-After")) };
    } catch {
      return { ok: false, status: 0, body: null, retryAfter: 0 };
    }
  }

  function errorCode(result) {
    if (result.status === 0) return "network";
    return (result.body && result.body.error && result.body.error.code) || (result.status >= 500 ? "internal" : "unknown");
  }

  // Decides what an error means for the visitor; `again` repeats what failed.
  function handleError(result, again) {
    const code = errorCode(result);
    const mine = generation;
    if (code === "not_in_queue") {
      enter();
    } else if (code === "token_expired" && embedded && parentOrigin) {
      notice("Your sign-in expired; renewing it with the shop…");
      tellParent({ type: "dropgate:token-expired" });
    } else if (RETRYABLE.has(code)) {
      const seconds = Math.max(result.retryAfter || 0, 2);
      notice(code === "network"
        ? `Connection lost. Retrying in ${seconds} s…`
        : `Lots of people are here right now. Retrying in ${seconds} s…`);
      timer = window.setTimeout(() => { if (mine === generation) again(); }, seconds * 1000);
    } else {
      const tokenIssue = code.startsWith("token") || code === "missing_token" || ERRORS[code] === TOKEN_PROBLEM;
      if (tokenIssue) store.remove("token");
      const retry = tokenIssue
        ? (devLogin && !embedded ? showDevLogin : null)
        : (code === "unknown" ? () => location.reload() : null);
      fail(code, retry);
    }
  }

  async function enter() {
    stopTransport();
    const mine = generation;
    const result = await call("POST", "");
    if (mine !== generation) return;
    if (!result.ok) {
      handleError(result, enter);
      return;
    }
    render(result.body);
    if (!finished) openStream();
  }

  async function poll() {
    setTransport("poll");
    const mine = generation;
    const result = await call("GET", "/me");
    if (mine !== generation) return;
    if (!result.ok) {
      handleError(result, poll);
      return;
    }
    render(result.body);
    if (!finished) {
      timer = window.setTimeout(() => { if (mine === generation) poll(); }, Math.max(result.body.poll_after_ms, 500));
    }
  }

  function startPolling() {
    stopTransport();
    poll();
  }

  // --- Server-Sent Events over fetch

  function parseBlock(block) {
    const message = { event: "message", data: [], id: null, retry: null };
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") message.event = value;
      else if (field === "data") message.data.push(value);
      else if (field === "id") message.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) message.retry = Number(value);
    }
    return message;
  }

  // Returns true when the stream delivered something, so failures can be counted.
  function dispatch(message) {
    if (message.retry !== null) retryMs = message.retry;
    if (message.id !== null) lastEventId = message.id;
    if (message.data.length === 0) return false;
    if (message.event === "replaced") {
      // This visitor opened the waiting room again elsewhere, which now has the
      // stream; reconnecting would take it back and forth, so poll instead.
      startPolling();
      return true;
    }
    if (message.event === "position" || message.event === "result" || message.event === "sold_out" || message.event === "closed") {
      render(JSON.parse(message.data.join("\n")));
      return true;
    }
    return message.event === "reconnect";
  }

  async function openStream() {
    stopTransport();
    const mine = generation;
    const controller = new AbortController();
    abortStream = () => controller.abort();
    let silence = null;
    const watch = () => {
      window.clearTimeout(silence);
      silence = window.setTimeout(() => controller.abort(), STREAM_SILENCE_MS);
    };
    let received = false;
    try {
      const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      watch();
      const response = await fetch(`${api}/me/stream`, {
        headers, cache: "no-store", credentials: "omit", signal: controller.signal,
      });
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok) {
        window.clearTimeout(silence);
        const body = await response.json().catch(() => null);
        const result = { ok: false, status: response.status, body, retryAfter: 0 };
        if (mine !== generation) return;
        // Too many streams here, or a failure the stream cannot fix: poll instead.
        if (["too_many_streams", "unavailable", "rate_limited", "internal"].includes(errorCode(result))) {
          startPolling();
        } else {
          handleError(result, openStream);
        }
        return;
      }
      if (!response.body || !type.startsWith("text/event-stream")) throw new Error("no stream");
      setTransport("stream");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done || mine !== generation) break;
        watch();
        buffer += decoder.decode(value, { stream: true });
        // Lines may end in \r\n, \n or \r; a trailing \r may be half of a \r\n.
        buffer = buffer.replace(/\r\n/g, "\n").replace(/\r(?!$)/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const message = parseBlock(block);
          if (dispatch(message)) {
            received = true;
            streamFailures = 0;
          }
          if (finished || mine !== generation) return;
        }
      }
    } catch {
      // Aborted, offline, or streaming unsupported: handled below like an end.
    } finally {
      window.clearTimeout(silence);
    }
    if (finished || mine !== generation) return;
    if (!received) streamFailures += 1;
    if (streamFailures >= STREAM_ATTEMPTS) {
      startPolling();
      return;
    }
    // Ended without an outcome (server restart, proxy timeout): reconnect like
    // EventSource would, after the server's retry hint.
    timer = window.setTimeout(() => { if (mine === generation) openStream(); }, retryMs);
  }

  // --- where the token comes from

  function useToken(value) {
    token = value;
    store.set("token", value);
    finished = false;
    show("result", false);
    enter();
  }

  function tokenFromFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const value = params.get("token");
    if (value) {
      // Out of the address bar, history and anything the visitor copies or shares.
      history.replaceState(null, "", location.pathname + location.search);
    }
    return value;
  }

  function askParent() {
    let asked = 0;
    const ask = () => {
      if (token || asked >= PARENT_WAIT_MS / 1000) return;
      asked += 1;
      let origins = [...allowedOrigins];
      const ancestor = location.ancestorOrigins && location.ancestorOrigins[0];
      if (ancestor && allowedOrigins.has(ancestor)) origins = [ancestor];
      for (const origin of origins) {
        try { window.parent.postMessage({ type: "dropgate:ready", event_id: eventId }, origin); } catch { /* bad origin */ }
      }
      window.setTimeout(ask, 1000);
    };
    ask();
    window.setTimeout(() => { if (!token) fail("missing_token", () => location.reload()); }, PARENT_WAIT_MS);
  }

  window.addEventListener("message", (message) => {
    // Only the framing page, and only from an origin allowed to call the API.
    if (message.source !== window.parent || !allowedOrigins.has(message.origin)) return;
    const data = message.data;
    if (data && data.type === "dropgate:token" && typeof data.token === "string" && data.token) {
      parentOrigin = message.origin;
      useToken(data.token);
    }
  });

  function showDevLogin() {
    show("connecting", false);
    show("error", false);
    show("waiting", false);
    show("dev-login", true);
    setState("signed_out");
    const user = $("dev-user");
    if (!user.value) user.value = `visitor-${Math.random().toString(36).slice(2, 8)}`;
    user.focus();
  }

  $("dev-login").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const platform = $("dev-platform").value.trim();
    const user = $("dev-user").value.trim();
    try {
      const response = await fetch(devTokenUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ platform, user }),
        credentials: "omit",
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        fail(errorCode({ status: response.status, body }), showDevLogin);
        return;
      }
      show("dev-login", false);
      useToken(body.token);
    } catch {
      fail("network", showDevLogin);
    }
  });

  function askWhichToken(fromLink, stored, linkUser, storedUser) {
    show("connecting", false);
    show("switch-user", true);
    setState("choosing");
    $("switch-link-user").textContent = linkUser;
    $("switch-stored-user").textContent = storedUser;
    const choose = (value) => {
      show("switch-user", false);
      useToken(value);
    };
    $("switch-keep").onclick = () => choose(stored);
    $("switch-take").onclick = () => choose(fromLink);
    $("switch-keep").focus();
  }

  // --- start

  $("event-id").textContent = eventId;
  document.title = `Waiting room: ${eventId}`;
  const fromLink = tokenFromFragment();
  const stored = store.get("token");
  const who = (value) => {
    const id = value && identity(value);
    return id ? `${id.platform}/${id.user}` : null;
  };
  if (fromLink && stored && who(fromLink) !== who(stored)) {
    // A link must not silently sign the visitor out of their own place in line: it
    // may be someone else's, sent to them.
    askWhichToken(fromLink, stored, who(fromLink) || "someone else", who(stored) || "you");
  } else if (fromLink || stored) {
    useToken(fromLink || stored);
  } else if (embedded) {
    askParent();
  } else if (devLogin) {
    showDevLogin();
  } else {
    fail("missing_token", null);
  }
})();
