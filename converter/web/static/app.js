// The page at /: upload, convert and download through the public API only.
// Plain browser JavaScript, no build step. Everything shown that came from the API or from a
// document is set as text (never as HTML): file names and messages are untrusted.
"use strict";

(() => {
  const KEY_STORAGE = "converter.apiKey";
  const RECENT_RUNS = 10;
  const $ = (id) => document.getElementById(id);

  const state = {
    formats: null,     // GET /v1/formats: {sources: {name: {targets: {target: {options}}}}}
    file: null,        // the uploaded file's JSON
    controls: [],      // option controls of the chosen target
    generation: 0,     // bumped on each new file, so a stale poll stops updating the page
    names: new Map(),  // file id -> filename, for the runs table
  };

  // ---- talking to the API -------------------------------------------------------------

  /** An API error: message is the API's own error.message. */
  class ApiError extends Error {
    constructor(message, status, body) {
      super(message);
      this.status = status;
      this.body = body || {};
    }
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  function authHeaders() {
    const key = apiKey();
    return key ? { "X-API-Key": key } : {};
  }

  /** Turn a failed response's text into an ApiError carrying the API's message. */
  function errorFrom(status, text) {
    try {
      const body = JSON.parse(text);
      if (body && body.error && typeof body.error.message === "string") {
        return new ApiError(body.error.message, status, body.error);
      }
    } catch (_notJson) {
      // A proxy in front of the service may answer with HTML; fall through.
    }
    return new ApiError(`The service answered HTTP ${status}`, status, {});
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json", ...authHeaders() };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(`The service cannot be reached (${err.message})`, 0, {});
    }
    const text = await response.text();
    if (!response.ok) throw errorFrom(response.status, text);
    return text ? JSON.parse(text) : null;
  }

  /** POST /v1/files with XMLHttpRequest, which (unlike fetch) reports upload progress. */
  function uploadFile(file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/v1/files");
      for (const [name, value] of Object.entries(authHeaders())) {
        xhr.setRequestHeader(name, value);
      }
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", () => {
        if (xhr.status === 201) resolve(JSON.parse(xhr.responseText));
        else reject(errorFrom(xhr.status, xhr.responseText));
      });
      xhr.addEventListener("error", () => {
        reject(new ApiError("The upload failed: the service cannot be reached", 0, {}));
      });
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });
  }

  // ---- small view helpers -------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    node.append(...children);
    return node;
  }

  function showError(err) {
    $("error-message").textContent = err.message;
    const body = (err && err.body) || {};
    const parts = [];
    if (body.field) parts.push(`field: ${body.field}`);
    const valid = body.valid_targets || body.valid_values;
    if (Array.isArray(valid) && valid.length) parts.push(`valid: ${valid.join(", ")}`);
    if (body.retry_after) parts.push(`retry in ${body.retry_after}s`);
    if (body.request_id) parts.push(`request ${body.request_id}`);
    $("error-detail").textContent = parts.join(" · ");
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-message").textContent = "";
    $("error-detail").textContent = "";
  }

  function setStatus(text, kind = "") {
    $("status").textContent = text;
    $("status").dataset.kind = kind;
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- option controls, built from whatever GET /v1/formats says ----------------------

  const INTEGER_TYPES = new Set(["integer", "int", "positive_int"]);
  const NUMBER_TYPES = new Set(["number", "float", "decimal"]);
  const BOOLEAN_TYPES = new Set(["boolean", "bool"]);

  /** Choices as [{value, label}], from a list of values, of {value, label}, or a mapping. */
  function choiceList(choices) {
    if (Array.isArray(choices)) {
      return choices.map((c) => (c !== null && typeof c === "object"
        ? { value: c.value, label: String(c.label ?? c.value) }
        : { value: c, label: String(c) }));
    }
    return Object.keys(choices).map((value) => ({ value, label: value }));
  }

  function describeRange(spec) {
    const min = spec.min ?? spec.minimum;
    const max = spec.max ?? spec.maximum;
    if (min !== undefined && max !== undefined) return `${min} to ${max}`;
    if (min !== undefined) return `at least ${min}`;
    if (max !== undefined) return `at most ${max}`;
    return spec.type === "positive_int" ? "a positive integer" : "";
  }

  /**
   * One control for one option spec. read() answers {set, value}: unset fields are left out
   * of the request so the service applies its own default (and the cache key stays the same
   * as an API call without them). Values are not validated here: the API's message is the
   * one people should see.
   */
  function optionControl(name, spec) {
    const id = `opt-${name}`;
    const type = String(spec.type || "").toLowerCase();
    const hasDefault = spec.default !== undefined && spec.default !== null;
    const hints = [];
    let input;
    let read;

    const given = spec.choices ?? spec.enum;
    if (given && (Array.isArray(given) ? given.length : Object.keys(given).length)) {
      const choices = choiceList(given);
      input = el("select", { id, name });
      input.append(el("option", { value: "", text: hasDefault ? `default (${spec.default})`
        : "default" }));
      choices.forEach((c, i) => input.append(el("option", { value: String(i), text: c.label })));
      read = () => (input.value === "" ? { set: false }
        : { set: true, value: choices[Number(input.value)].value });
    } else if (BOOLEAN_TYPES.has(type)) {
      input = el("input", { id, name, type: "checkbox", checked: spec.default === true });
      read = () => (input.checked === (spec.default === true) ? { set: false }
        : { set: true, value: input.checked });
    } else {
      const numeric = INTEGER_TYPES.has(type) || NUMBER_TYPES.has(type);
      const range = describeRange(spec);
      if (range) hints.push(range);
      input = el("input", {
        id, name, type: "text", spellcheck: "false", autocomplete: "off",
        inputmode: numeric ? (INTEGER_TYPES.has(type) ? "numeric" : "decimal") : undefined,
        placeholder: hasDefault ? String(spec.default) : "",
      });
      read = () => {
        const raw = input.value.trim();
        if (raw === "") return { set: false };
        // Numbers travel as JSON numbers; anything else as typed, for the API to judge.
        const number = Number(raw);
        return { set: true, value: numeric && Number.isFinite(number) ? number : raw };
      };
    }
    if (hasDefault) hints.push(`default ${spec.default}`);
    const help = [spec.help, ...hints].filter(Boolean).join(" · ");
    const row = el("div", { class: "option", "data-option": name },
      el("label", { for: id }, el("code", { text: name })), input,
      el("small", { text: help }));
    return { name, element: row, read };
  }

  /** Build the controls of a target's options into container; returns them. */
  function renderOptions(container, options) {
    container.replaceChildren();
    // A mapping of name -> spec today; a list of specs carrying their name would do too.
    const entries = Array.isArray(options) ? options.map((spec) => [spec.name, spec])
      : Object.entries(options || {});
    const controls = entries.map(([name, spec]) => optionControl(name, spec || {}));
    controls.forEach((c) => container.append(c.element));
    return controls;
  }

  function collectOptions(controls) {
    const out = {};
    for (const control of controls) {
      const { set, value } = control.read();
      if (set) out[control.name] = value;
    }
    return out;
  }

  // ---- the flow: key, file, target, convert -------------------------------------------

  function showKeyStatus() {
    const key = apiKey();
    delete $("key-status").dataset.kind;
    $("key-status").textContent = key
      ? `Using the key ending …${key.slice(-4)} in this tab (sessionStorage), sent as X-API-Key.`
      : "Paste an API key. It is kept in this tab only (sessionStorage).";
    $("forget-key").hidden = !key;
  }

  function chosenTarget() {
    const checked = document.querySelector("#targets input[name=target]:checked");
    return checked ? checked.value : null;
  }

  function targetsOf(format) {
    const source = state.formats && state.formats.sources[format];
    return source ? source.targets : {};
  }

  function showTarget() {
    const target = chosenTarget();
    const spec = targetsOf(state.file.format)[target] || {};
    state.controls = renderOptions($("option-fields"), spec.options);
    $("options").hidden = state.controls.length === 0;
    $("result").hidden = true;
  }

  function showFile(file) {
    state.file = file;
    state.names.set(file.id, file.filename);
    $("file-name").textContent = file.filename;
    $("detected-format").textContent = file.format;
    $("file-size").textContent = bytes(file.size_bytes);
    $("file-info").hidden = false;
    const targets = Object.keys(targetsOf(file.format));
    const box = $("targets");
    box.replaceChildren();
    for (const target of targets) {
      const radio = el("input", { type: "radio", name: "target", value: target,
        id: `target-${target}` });
      radio.addEventListener("change", showTarget);
      box.append(el("label", { class: "target", for: radio.id }, radio,
        el("span", { text: target })));
    }
    const first = box.querySelector("input[value=pdf]") || box.querySelector("input");
    if (first) first.checked = true;
    $("convert-section").hidden = targets.length === 0;
    setStatus(targets.length ? "" : `No conversions are offered for ${file.format}.`);
    if (targets.length) showTarget();
  }

  async function chooseFile(file) {
    if (!file) return;
    clearError();
    state.generation += 1;
    state.file = null;
    $("file-info").hidden = true;
    $("convert-section").hidden = true;
    const bar = $("upload-progress");
    bar.value = 0;
    bar.hidden = false;
    $("drop-zone").classList.add("busy");
    try {
      showFile(await uploadFile(file, (fraction) => { bar.value = Math.round(fraction * 100); }));
    } catch (err) {
      showError(err);
    } finally {
      bar.hidden = true;
      $("drop-zone").classList.remove("busy");
      $("file-input").value = "";
    }
  }

  const STATUS_TEXT = {
    pending: "Queued: waiting for a free LibreOffice instance…",
    running: "Converting…",
  };

  /** Poll GET /v1/runs/{id} until the run has finished (or a newer file replaced it). */
  async function waitForRun(runId, generation) {
    let delay = 300;
    for (;;) {
      const run = await api("GET", `/v1/runs/${encodeURIComponent(runId)}`);
      if (generation !== state.generation) return null;
      if (run.status === "completed" || run.status === "failed") return run;
      setStatus(STATUS_TEXT[run.status] || run.status, "busy");
      await sleep(delay);
      delay = Math.min(delay * 1.5, 2000);
    }
  }

  async function convert() {
    const file = state.file;
    const target = chosenTarget();
    if (!file || !target) return;
    clearError();
    const generation = state.generation;
    const button = $("convert");
    const bar = $("convert-progress");
    button.disabled = true;
    $("result").hidden = true;
    bar.removeAttribute("value");  // indeterminate: the engine reports no percentage
    bar.hidden = false;
    setStatus("Submitting…", "busy");
    try {
      const options = collectOptions(state.controls);
      const created = await api("POST", "/v1/runs", { file_id: file.id, format: target,
        options });
      const run = await waitForRun(created.run_id, generation);
      if (run === null) return;
      if (run.status === "failed") {
        throw new ApiError(run.error || "The conversion failed", 0, {});
      }
      const link = $("download");
      const stem = file.filename.replace(/\.[^.]*$/, "") || "converted";
      link.href = run.download_url;
      link.setAttribute("download", `${stem}.${run.format}`);
      link.textContent = `Download ${stem}.${run.format}`;
      $("result-detail").textContent = `${bytes(run.size_bytes)}, link valid until `
        + new Date(run.expires_at).toLocaleTimeString();
      $("result").hidden = false;
      setStatus("Done", "done");
    } catch (err) {
      setStatus("Failed", "failed");
      showError(err);
    } finally {
      bar.hidden = true;
      button.disabled = false;
      refreshRuns();
    }
  }

  // ---- recent runs --------------------------------------------------------------------

  async function fileName(id) {
    if (!state.names.has(id)) {
      try {
        state.names.set(id, (await api("GET", `/v1/files/${encodeURIComponent(id)}`)).filename);
      } catch (_gone) {
        state.names.set(id, id);  // deleted since, or not visible: the id is all there is
      }
    }
    return state.names.get(id);
  }

  async function refreshRuns() {
    if (!apiKey()) return;
    let page;
    try {
      page = await api("GET", `/v1/runs?limit=${RECENT_RUNS}`);
    } catch (err) {
      // Shown in this section, so the error box above stays about the document at hand.
      $("runs-error").textContent = err.message;
      $("runs-error").hidden = false;
      $("runs-empty").hidden = true;
      document.querySelector("#runs tbody").replaceChildren();
      if (err.status === 401) {
        $("key-status").textContent = `The service refused this key: ${err.message}`;
        $("key-status").dataset.kind = "failed";
      }
      return;
    }
    $("runs-error").hidden = true;
    const names = await Promise.all(page.data.map((run) => fileName(run.file_id)));
    const rows = page.data.map((run, i) => {
      const link = run.download_url
        ? el("a", { href: run.download_url, download: true, text: "download" })
        : el("span", { class: "hint", text: run.error || "" });
      return el("tr", { "data-run": run.id },
        el("td", { text: new Date(run.created_at).toLocaleString() }),
        el("td", { text: names[i] }),
        el("td", { text: run.format }),
        el("td", {}, el("span", { class: `badge ${run.status}`, text: run.status })),
        el("td", {}, link));
    });
    document.querySelector("#runs tbody").replaceChildren(...rows);
    $("runs-empty").hidden = rows.length > 0;
  }

  // ---- start-up -----------------------------------------------------------------------

  function bind() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      $("api-key").value = "";
      clearError();
      showKeyStatus();
      refreshRuns();
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      showKeyStatus();
      document.querySelector("#runs tbody").replaceChildren();
      $("runs-empty").hidden = false;
      $("runs-error").hidden = true;
    });
    $("file-input").addEventListener("change", (event) => chooseFile(event.target.files[0]));
    const zone = $("drop-zone");
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        zone.classList.add("over");
      });
    }
    for (const name of ["dragleave", "drop"]) {
      zone.addEventListener(name, () => zone.classList.remove("over"));
    }
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      chooseFile(event.dataTransfer.files[0]);
    });
    $("convert").addEventListener("click", convert);
    $("refresh-runs").addEventListener("click", refreshRuns);
  }

  async function start() {
    bind();
    showKeyStatus();
    try {
      state.formats = await api("GET", "/v1/formats");
    } catch (err) {
      showError(err);
    }
    document.body.dataset.ready = "true";
    refreshRuns();
  }

  // For tests and the curious: the generic option renderer, usable on any spec.
  window.converterPage = { renderOptions, collectOptions };
  start();
})();
