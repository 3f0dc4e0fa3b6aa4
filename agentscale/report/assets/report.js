// agentscale report: item tables with filters and pages; a click on a row opens its node-by-node trace.
// Stored texts are data: this script only creates elements and sets textContent, never innerHTML.
"use strict";
(function () {
  var PAGE = 100;
  var COLUMNS = ["item", "question", "reference", "answer", "correct", "tokens", "latency"];

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function island(id) {
    return JSON.parse(document.getElementById(id).textContent);
  }

  function verdict(value) {
    return value === null ? "unscored" : value ? "right" : "wrong";
  }

  function ItemTable(root) {
    this.root = root;
    this.id = root.getAttribute("data-items");
    this.rows = island("data-" + this.id).rows;
    this.traces = null; // parsed on the first click: opening the page does not pay for them
    this.filter = "all";
    this.query = "";
    this.page = 0;
    this.open = {};
    this.build();
    this.render();
  }

  ItemTable.prototype.build = function () {
    var self = this;
    var bar = el("div", "item-controls");
    ["all", "wrong", "right", "unscored"].forEach(function (name) {
      var button = el("button", "filter", name);
      button.type = "button";
      button.setAttribute("data-filter", name);
      button.addEventListener("click", function () {
        self.filter = name;
        self.page = 0;
        self.render();
      });
      bar.appendChild(button);
    });
    var search = el("input", "search");
    search.type = "search";
    search.placeholder = "search questions and answers";
    search.addEventListener("input", function () {
      self.query = search.value.toLowerCase();
      self.page = 0;
      self.render();
    });
    bar.appendChild(search);
    this.count = el("span", "count");
    bar.appendChild(this.count);
    this.root.appendChild(bar);
    var table = el("table", "item-table");
    var head = el("tr");
    COLUMNS.forEach(function (name) {
      head.appendChild(el("th", null, name));
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    this.body = el("tbody");
    table.appendChild(this.body);
    this.root.appendChild(table);
    this.pager = el("div", "pager");
    this.root.appendChild(this.pager);
  };

  ItemTable.prototype.matches = function () {
    var filter = this.filter;
    var query = this.query;
    var picked = [];
    for (var i = 0; i < this.rows.length; i++) {
      var row = this.rows[i];
      if (filter !== "all" && verdict(row[4]) !== filter) continue;
      if (query) {
        var hay = (row[0] + "\n" + row[1] + "\n" + (row[3] || "") + "\n" + (row[2] || "")).toLowerCase();
        if (hay.indexOf(query) < 0) continue;
      }
      picked.push(i);
    }
    return picked;
  };

  ItemTable.prototype.render = function () {
    var self = this;
    var picked = this.matches();
    var pages = Math.max(1, Math.ceil(picked.length / PAGE));
    this.page = Math.min(this.page, pages - 1);
    this.count.textContent = picked.length + " of " + this.rows.length + " items";
    Array.prototype.forEach.call(this.root.querySelectorAll("button.filter"), function (b) {
      b.classList.toggle("active", b.getAttribute("data-filter") === self.filter);
    });
    this.body.textContent = "";
    picked.slice(this.page * PAGE, (this.page + 1) * PAGE).forEach(function (index) {
      self.body.appendChild(self.rowElement(index));
      if (self.open[index]) self.body.appendChild(self.traceElement(index));
    });
    this.renderPager(pages);
  };

  ItemTable.prototype.rowElement = function (index) {
    var self = this;
    var row = this.rows[index];
    var tr = el("tr", "item-row " + verdict(row[4]));
    tr.setAttribute("data-index", index);
    tr.appendChild(el("td", "key", row[0]));
    tr.appendChild(el("td", "question", row[1]));
    tr.appendChild(el("td", "reference", row[2]));
    var answer = el("td", "answer", row[3] === null ? "—" : row[3]);
    if (row[5]) answer.appendChild(el("div", "stopped", "stopped: " + row[5]));
    tr.appendChild(answer);
    tr.appendChild(el("td", "verdict", row[4] === null ? "—" : row[4] ? "✓" : "✗"));
    tr.appendChild(el("td", "num", row[6]));
    tr.appendChild(el("td", "num", row[7].toFixed(2) + " s"));
    tr.title = "click to show what each node was asked and said";
    tr.addEventListener("click", function () {
      self.open[index] = !self.open[index];
      self.render();
    });
    return tr;
  };

  ItemTable.prototype.traceElement = function (index) {
    if (this.traces === null) this.traces = island("data-" + this.id + "-traces");
    var strings = this.traces.strings;
    var calls = this.traces.calls[index] || [];
    var tr = el("tr", "trace-row");
    var td = el("td");
    td.colSpan = COLUMNS.length;
    var row = this.rows[index];
    if (row[8]) td.appendChild(el("div", "detail", "scorer: " + row[8]));
    if (!calls.length) td.appendChild(el("div", "empty", "no node calls recorded for this item"));
    calls.forEach(function (call) {
      var box = el("div", "node-trace " + call[3]);
      var head = el("div", "node-head");
      head.appendChild(el("span", "node-id", call[0]));
      head.appendChild(el("span", "node-role", call[1]));
      // a node that never called has no route: model-free (vote, tester) unless it was skipped
      head.appendChild(el("span", "node-route", call[2] || (call[3] === "skipped" ? "—" : "no model")));
      head.appendChild(el("span", "node-status", call[3] + (call[12] ? ", cut" : "")));
      var figures = call[7] + " + " + call[8] + " tokens · " + call[9].toFixed(3) + " s" + (call[10] ? " · cache hit" : "");
      head.appendChild(el("span", "node-figures", figures));
      box.appendChild(head);
      call[4].forEach(function (message) {
        var block = el("details", "message");
        block.appendChild(el("summary", null, "prompt: " + message[0]));
        block.appendChild(el("pre", null, strings[message[1]]));
        box.appendChild(block);
      });
      if (call[5] !== null) {
        var completion = el("details", "completion");
        completion.open = true;
        completion.appendChild(el("summary", null, "completion"));
        completion.appendChild(el("pre", null, strings[call[5]]));
        box.appendChild(completion);
      }
      box.appendChild(el("div", "node-answer", "answer: " + (call[6] === null ? "—" : call[6])));
      if (call[11]) box.appendChild(el("div", "node-error", "error: " + call[11]));
      td.appendChild(box);
    });
    tr.appendChild(td);
    return tr;
  };

  ItemTable.prototype.renderPager = function (pages) {
    var self = this;
    this.pager.textContent = "";
    if (pages < 2) return;
    var previous = el("button", "prev", "‹ previous");
    previous.type = "button";
    previous.disabled = this.page === 0;
    previous.addEventListener("click", function () {
      self.page -= 1;
      self.render();
    });
    var next = el("button", "next", "next ›");
    next.type = "button";
    next.disabled = this.page >= pages - 1;
    next.addEventListener("click", function () {
      self.page += 1;
      self.render();
    });
    this.pager.appendChild(previous);
    this.pager.appendChild(el("span", "page", "page " + (this.page + 1) + " of " + pages));
    this.pager.appendChild(next);
  };

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("div.items[data-items]"), function (root) {
      new ItemTable(root);
    });
    document.documentElement.setAttribute("data-ready", "1");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
