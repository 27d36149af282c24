// The account page's filters form: rules ("if From contains X then move to Y …") that
// the server keeps as a marked block of the account's Sieve script (web/filters.py)
// and checks like any script. A script edited by hand is shown, read only.

const FIELDS = [
  ["from", "From"],
  ["to", "To"],
  ["subject", "Subject"],
  ["header", "Header…"],
];
const MATCHES = [
  ["contains", "contains"],
  ["is", "is"],
  ["matches", "matches (* and ?)"],
];
const ACTIONS = [
  ["fileinto", "Move to folder"],
  ["seen", "Mark read"],
  ["flag", "Flag"],
  ["redirect", "Forward a copy to"],
  ["discard", "Discard"],
  ["stop", "Stop (no further rules)"],
];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function choice(label, options, value, name) {
  const select = el("select", { name, "aria-label": label }, ...options.map(([v, text]) => el("option", { value: v }, text)));
  if (value !== undefined) select.value = value;
  return select;
}

export class FiltersForm {
  constructor(form, folders, send) {
    this.form = form;
    this.folders = folders; // mailbox names, for "Move to folder"
    this.send = send;
    this.list = form.querySelector("#rules");
    form.querySelector("#add-rule").addEventListener("click", () => {
      this.add({ enabled: true, field: "from", match: "contains", value: "", actions: [{ type: "fileinto", arg: "" }] });
      this.renumber();
      this.list.lastElementChild.querySelector("input[name=value]").focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  show({ rules, editable }) {
    this.list.replaceChildren();
    for (const rule of rules) this.add(rule);
    this.renumber();
    this.form.querySelector("#filters-fields").disabled = !editable;
    document.querySelector("#filters-note").hidden = editable;
  }

  add(rule) {
    const header = el("input", { name: "header", type: "text", "aria-label": "Header name", placeholder: "Header name", value: rule.header || "" });
    const field = choice("If", FIELDS, rule.field, "field");
    const sync = () => (header.hidden = field.value !== "header");
    field.addEventListener("change", sync);
    sync();
    const actions = el("ul", { class: "actions-list", "aria-label": "Actions" });
    const item = el(
      "li",
      { class: "rule" },
      el(
        "fieldset",
        {},
        el("legend", {}, ""),
        el("label", { class: "inline" }, el("input", { name: "enabled", type: "checkbox", checked: rule.enabled !== false }), " Enabled"),
        el("div", { class: "row-form" }, field, header, choice("Test", MATCHES, rule.match, "match"), el("input", { name: "value", type: "text", "aria-label": "Text", placeholder: "text", value: rule.value || "" })),
        actions,
        el(
          "div",
          { class: "row-form" },
          el("button", { type: "button", onclick: () => this.addAction(actions, { type: "seen", arg: "" }) }, "Add action"),
          el("button", { type: "button", "aria-label": "Move rule up", onclick: () => this.move(item, -1) }, "↑"),
          el("button", { type: "button", "aria-label": "Move rule down", onclick: () => this.move(item, 1) }, "↓"),
          el("button", { type: "button", class: "danger", onclick: () => { item.remove(); this.renumber(); } }, "Delete rule"),
        ),
      ),
    );
    for (const action of rule.actions || []) this.addAction(actions, action);
    this.list.append(item);
  }

  addAction(list, action) {
    const folder = choice("Folder", this.folders.map((name) => [name, name]), action.type === "fileinto" ? action.arg : undefined, "folder");
    if (action.type === "fileinto" && action.arg && !this.folders.includes(action.arg)) {
      folder.append(el("option", { value: action.arg }, action.arg));
      folder.value = action.arg;
    }
    const address = el("input", { name: "address", type: "text", inputmode: "email", "aria-label": "Address", placeholder: "address", value: action.type === "redirect" ? action.arg : "" });
    const type = choice("Then", ACTIONS, action.type, "type");
    const sync = () => {
      folder.hidden = type.value !== "fileinto";
      address.hidden = type.value !== "redirect";
    };
    type.addEventListener("change", sync);
    sync();
    const row = el("li", { class: "row-form" }, type, folder, address);
    row.append(el("button", { type: "button", "aria-label": "Remove action", onclick: () => row.remove() }, "×"));
    list.append(row);
  }

  move(item, delta) {
    const other = delta < 0 ? item.previousElementSibling : item.nextElementSibling;
    if (!other) return;
    if (delta < 0) other.before(item);
    else other.after(item);
    this.renumber();
    item.querySelector(`button[aria-label="Move rule ${delta < 0 ? "up" : "down"}"]`).focus();
  }

  renumber() {
    [...this.list.children].forEach((item, i) => {
      item.querySelector("legend").textContent = `Rule ${i + 1}`;
      item.setAttribute("aria-label", `Rule ${i + 1}`);
    });
    document.querySelector("#no-rules").hidden = this.list.children.length > 0;
  }

  rules() {
    return [...this.list.children].map((item) => {
      const get = (name) => item.querySelector(`[name=${name}]`);
      return {
        enabled: get("enabled").checked,
        field: get("field").value,
        header: get("header").value.trim(),
        match: get("match").value,
        value: get("value").value,
        actions: [...item.querySelectorAll(".actions-list > li")].map((row) => {
          const type = row.querySelector("[name=type]").value;
          const arg = type === "fileinto" ? row.querySelector("[name=folder]").value : type === "redirect" ? row.querySelector("[name=address]").value.trim() : "";
          return { type, arg };
        }),
      };
    });
  }

  async save() {
    const status = this.form.querySelector(".status");
    status.classList.remove("error");
    status.textContent = "Checking…";
    try {
      await this.send("PUT", "/webmail/account/filters", { rules: this.rules() });
      status.textContent = "Rules saved.";
      this.form.dispatchEvent(new CustomEvent("saved"));
    } catch (error) {
      status.textContent = error.message;
      status.classList.add("error");
    }
  }
}
