// Groups & results tab: the pool's windows with their state, a close button for those allowed to
// trigger, and the published results with downloads.

import { enc, get, post, resultContentPath, saveAs } from "./api.js";
import { actionButton, badge, debounce, errorText, fill, fmtBytes, h, notify, select, shortId, table, timeEl, uid, windowEl } from "./dom.js";

const PAGE = 50;
const STATES = ["open", "ready", "claimed", "done", "failed"];

function errorPara(err) {
  return h("p", { class: "form-error", role: "alert" }, errorText(err));
}

/** The Groups & results tab. */
export function groupsSection(ctx, pool) {
  const canClose = pool.role === "admin" || pool.role === "aggregator";
  const stateFilter = select("state", [["", "Any state"], ...STATES.map((s) => [s, s])], "");
  stateFilter.id = uid("state");
  const groupsArea = h("div", {}, h("p", { class: "loading" }, "Loading groups…"));
  const groupsMore = h("div", { class: "row" });
  const resultsArea = h("div", {}, h("p", { class: "loading" }, "Loading results…"));
  const resultsMore = h("div", { class: "row" });
  let groups = [];
  let groupsCursor = null;
  let results = [];
  let resultsCursor = null;
  const resultNames = new Map();

  function download(result) {
    return saveAs(resultContentPath(pool.pool_id, result.result_id), result.name);
  }

  async function closeGroup(group) {
    await post(`/api/v1/pools/${enc(pool.pool_id)}/groups/${enc(group.group_id)}/close`);
    notify("The group is closed and ready for the aggregator.");
    await loadGroups(true);
  }

  const groupColumns = [
    { label: "Window", cell: (g) => windowEl(g.window_start, g.window_end) },
    {
      label: "State",
      cell: (g) => [
        badge(g.state),
        g.trigger ? h("span", { class: "muted small" }, ` ${g.trigger}`) : null,
        g.attempts ? h("div", { class: "muted small" }, `attempts: ${g.attempts}`) : null,
        canClose && g.state === "open"
          ? h("div", {}, actionButton("Close now", () => closeGroup(g), {
            kind: "secondary btn-small",
            ariaLabel: `Close the group of the window starting ${g.window_start}`,
          }))
          : null,
      ],
      class: "nowrap",
    },
    { label: "Files", cell: (g) => [String(g.file_count), h("span", { class: "muted small" }, ` · ${fmtBytes(g.bytes)}`)], class: "num" },
    { label: "Contributors", cell: (g) => String(g.contributors), class: "num" },
    {
      label: "Result",
      cell: (g) => {
        if (!g.result_id) return g.state === "claimed" && g.lease_expires_at ? ["lease until ", timeEl(g.lease_expires_at, { short: true })] : "—";
        const name = resultNames.get(g.result_id);
        return actionButton(name ? h("span", { class: "filename" }, name) : "Download", () => download({ result_id: g.result_id, name: name ?? `result-${g.result_id}` }), {
          kind: "link",
          ariaLabel: `Download the result of the window starting ${g.window_start}`,
        });
      },
    },
  ];

  const resultColumns = [
    { label: "Name", cell: (r) => h("span", { class: "filename" }, r.name) },
    { label: "Published", cell: (r) => timeEl(r.created_at) },
    { label: "Size", cell: (r) => fmtBytes(r.size), class: "num" },
    { label: "SHA-256", cell: (r) => shortId(r.sha256, 12) },
    { label: "Group", cell: (r) => shortId(r.group_id) },
    { label: "File", cell: (r) => actionButton("Download", () => download(r), { kind: "link", ariaLabel: `Download ${r.name}` }) },
  ];

  async function loadGroups(reset) {
    const page = await get(`/api/v1/pools/${enc(pool.pool_id)}/groups`, {
      query: { state: stateFilter.value, limit: PAGE, cursor: reset ? undefined : groupsCursor },
    });
    groups = reset ? page.items : groups.concat(page.items);
    groupsCursor = page.next_cursor;
    fill(groupsArea, table(groupColumns, groups, { caption: "Groups", empty: "No groups yet: a group starts with the first file of its window." }));
    fill(groupsMore, groupsCursor ? actionButton("Load more groups", () => loadGroups(false)) : null);
  }

  async function loadResults(reset) {
    const page = await get(`/api/v1/pools/${enc(pool.pool_id)}/results`, {
      query: { limit: PAGE, cursor: reset ? undefined : resultsCursor },
    });
    results = reset ? page.items : results.concat(page.items);
    resultsCursor = page.next_cursor;
    for (const r of results) resultNames.set(r.result_id, r.name);
    fill(resultsArea, table(resultColumns, results, { caption: "Results", empty: "No results yet: they appear when an aggregator finishes a group." }));
    fill(resultsMore, resultsCursor ? actionButton("Load more results", () => loadResults(false)) : null);
  }

  async function reloadAll() {
    // Results first, so the groups table can name each group's result.
    await loadResults(true).catch((err) => fill(resultsArea, errorPara(err)));
    await loadGroups(true).catch((err) => fill(groupsArea, errorPara(err)));
  }

  stateFilter.addEventListener("change", () => loadGroups(true).catch((err) => fill(groupsArea, errorPara(err))));
  reloadAll();

  const el = h(
    "div",
    { class: "stack" },
    h(
      "section",
      { class: "card", "aria-labelledby": "groups-title" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "groups-title" }, "Groups"),
        h("div", { class: "filters" }, h("label", { for: stateFilter.id, class: "sr-only" }, "State"), stateFilter, actionButton("Refresh", reloadAll, { kind: "ghost" })),
      ),
      groupsArea,
      groupsMore,
    ),
    h("section", { class: "card", "aria-labelledby": "results-title" }, h("h2", { id: "results-title" }, "Results"), resultsArea, resultsMore),
  );

  return {
    el,
    refresh: debounce(() => {
      if (groups.length <= PAGE && results.length <= PAGE) reloadAll();
    }, 500),
  };
}
