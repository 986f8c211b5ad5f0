// Follows a running execution: polls for messages after the last sequence number shown and
// appends them; stops when the execution is final. Builds rows with textContent only, so
// stored content is never interpreted as HTML.
(function () {
  "use strict";
  var summary = document.getElementById("summary");
  if (!summary || summary.dataset.live !== "true") { return; }
  var id = summary.dataset.execution;
  var last = parseInt(summary.dataset.last, 10) || 0;
  var rows = document.getElementById("transcript-rows");

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function addRow(m) {
    var row = document.createElement("tr");
    row.className = "message fresh type-" + m.message_type;
    row.dataset.seq = m.sequence_number;
    cell(row, m.sequence_number);
    cell(row, m.round_number);
    cell(row, m.sender + " \u2192 " + m.recipient);
    cell(row, m.message_type);
    cell(row, m.confidence);
    var content = cell(row, "");
    var pre = document.createElement("pre");
    pre.textContent = JSON.stringify(m.content, null, 2);
    content.appendChild(pre);
    rows.appendChild(row);
  }

  function poll() {
    fetch("/api/executions/" + id + "/messages?since=" + last, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        (data.messages || []).forEach(function (m) {
          if (m.sequence_number > last) { addRow(m); last = m.sequence_number; }
        });
        var count = document.getElementById("message-count");
        if (count) { count.textContent = String(last); }
        var status = document.getElementById("status");
        if (status && data.status) { status.textContent = data.status; status.className = "badge " + data.status; }
        if (!data.final) { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
