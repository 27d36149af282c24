// Small helpers shared by the webmail's modules.

export function who(list) {
  if (!list || !list.length) return "";
  return list.map((a) => a.name || a.email).join(", ");
}

export function full(list) {
  if (!list || !list.length) return "";
  return list.map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(", ");
}
