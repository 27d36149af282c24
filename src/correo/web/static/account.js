// The account page: password (a correo endpoint), vacation reply (JMAP
// VacationResponse, RFC 8621 §8), forwarding, filters as a form (filters.js) and the
// Sieve script as text.

import { Jmap } from "./jmap.js";
import { FiltersForm } from "./filters.js";

const VACATION = "urn:ietf:params:jmap:vacationresponse";
const $ = (selector) => document.querySelector(selector);

function say(form, text, bad = false) {
  const status = form.querySelector(".status");
  status.textContent = text;
  status.classList.toggle("error", bad);
}

async function send(jmap, method, url, body) {
  const got = await fetch(url, {
    method,
    headers: jmap.headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  const answer = await got.json().catch(() => ({}));
  if (!got.ok) throw new Error(answer.error || `HTTP ${got.status}`);
  return answer;
}

function local(iso) {
  return iso ? iso.slice(0, 16) : "";
}

async function start() {
  const jmap = await Jmap.connect();
  $("#who").textContent = jmap.username;

  const password = $("#password-form");
  password.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = password.elements;
    if (f.new.value !== f.again.value) return say(password, "The new passwords differ.", true);
    say(password, "Changing…");
    try {
      await send(jmap, "POST", "/webmail/account/password", { current: f.current.value, new: f.new.value });
      password.reset();
      say(password, "Password changed.");
    } catch (error) {
      say(password, error.message, true);
    }
  });

  const vacation = $("#vacation-form");
  if (VACATION in jmap.session.capabilities) {
    const [[, got]] = await jmap.batch([["VacationResponse/get", { ids: ["singleton"] }]], [VACATION]);
    const current = (got.list || [])[0] || {};
    const f = vacation.elements;
    f.isEnabled.checked = Boolean(current.isEnabled);
    f.fromDate.value = local(current.fromDate);
    f.toDate.value = local(current.toDate);
    f.subject.value = current.subject || "";
    f.textBody.value = current.textBody || "";
    vacation.addEventListener("submit", async (event) => {
      event.preventDefault();
      const iso = (value) => (value ? new Date(value).toISOString().replace(/\.\d+Z$/, "Z") : null);
      const patch = {
        isEnabled: f.isEnabled.checked,
        fromDate: iso(f.fromDate.value),
        toDate: iso(f.toDate.value),
        subject: f.subject.value || null,
        textBody: f.textBody.value || null,
      };
      say(vacation, "Saving…");
      const [[name, result]] = await jmap.batch([["VacationResponse/set", { update: { singleton: patch } }]], [VACATION]);
      const refused = name === "error" ? result : result.notUpdated && result.notUpdated.singleton;
      if (refused) say(vacation, `Not saved: ${refused.description || refused.type}`, true);
      else {
        say(vacation, "Vacation reply saved.");
        loadSieve();
      }
    });
  } else {
    vacation.replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: "This server offers no vacation reply." }));
  }

  const forward = $("#forward-form");
  const sieve = $("#sieve-form");
  // the folders a rule may move to: full names, as Sieve's fileinto takes them
  const { list: boxes } = await jmap.call("Mailbox/get", { ids: null, properties: ["name", "parentId"] });
  const byId = new Map(boxes.map((b) => [b.id, b]));
  const fullName = (b) => (b.parentId && byId.has(b.parentId) ? `${fullName(byId.get(b.parentId))}/${b.name}` : b.name);
  const filters = new FiltersForm($("#filters-form"), boxes.map(fullName).sort(), (method, url, body) => send(jmap, method, url, body));
  // a refresh after another form's save must not undo what is being typed here
  let forwardEdited = false;
  forward.addEventListener("input", () => { forwardEdited = true; });
  $("#filters-form").addEventListener("saved", () => loadSieve());
  async function loadSieve() {
    const got = await fetch("/webmail/account/sieve", { headers: jmap.headers() });
    const answer = await got.json();
    sieve.elements.script.value = answer.script;
    filters.show(await (await fetch("/webmail/account/filters", { headers: jmap.headers() })).json());
    const settings = await (await fetch("/webmail/account/forwarding", { headers: jmap.headers() })).json();
    if (!forwardEdited) {
      forward.elements.to.value = settings.to.join(", ");
      forward.elements.keep.checked = settings.keep;
    }
  }
  forward.addEventListener("submit", async (event) => {
    event.preventDefault();
    const to = forward.elements.to.value.split(/[,;\s]+/).filter(Boolean);
    say(forward, "Saving…");
    try {
      await send(jmap, "PUT", "/webmail/account/forwarding", { to, keep: forward.elements.keep.checked });
      forwardEdited = false;
      say(forward, to.length ? "Forwarding saved." : "Forwarding off.");
      await loadSieve();
    } catch (error) {
      say(forward, error.message, true);
    }
  });
  await loadSieve();
  sieve.addEventListener("submit", async (event) => {
    event.preventDefault();
    say(sieve, "Checking…");
    try {
      await send(jmap, "PUT", "/webmail/account/sieve", { script: sieve.elements.script.value });
      say(sieve, "Script saved.");
      await loadSieve();
    } catch (error) {
      say(sieve, error.message, true);
    }
  });
  document.body.classList.add("ready");
}

start().catch((error) => {
  document.body.classList.add("failed");
  document.querySelector("main").prepend(Object.assign(document.createElement("p"), { className: "error", textContent: `The page could not start: ${error.message}` }));
});
