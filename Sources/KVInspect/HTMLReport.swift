import Foundation
import KVArtifact

// One self-contained page per plan: the summary, the timeline SVG inline, and sortable tables of
// ops, tensors and transfers. No network, no external scripts or fonts: the file can be mailed,
// archived next to the plan, or opened offline. A few lines of inline JavaScript sort the tables
// (click a header) and show a hovered buffer's name, size, lifetime and tier; without JavaScript
// the page still reads (the SVG's own <title> tooltips remain). The script marks
// <body data-ready="1"> when it has set up, and records uncaught errors in data-errors, so a
// headless browser can tell a page that works from one that merely loaded (scripts/browser-check.py).

/// Renders a plan as one self-contained HTML page.
public enum HTMLReport {
    /// One table cell: its text and the value it sorts by (numbers sort numerically).
    struct Cell {
        var text: String
        var sort: Double?
        init(_ text: String, sort: Double? = nil) { self.text = text; self.sort = sort }
        init(bytes n: Int) { self.init(humanBytes(Double(n)), sort: Double(n)) }
        init(seconds s: Double) { self.init(formatSeconds(s), sort: s) }
        init(count n: Int) { self.init(grouped(n), sort: Double(n)) }
    }

    static let style = """
    body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1240px}\
    h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}\
    table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}\
    th{background:#f4f4f4;position:sticky;top:0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
    table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e8eef6}\
    th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}\
    .scroll{max-height:480px;overflow:auto;border:1px solid #ddd}.muted{color:#666}\
    #hover{position:fixed;right:16px;top:16px;background:#fffbe6;border:1px solid #d9c66a;padding:6px 10px;font-size:13px;\
    max-width:420px;display:none;box-shadow:0 2px 6px rgba(0,0,0,.15)}svg{max-width:100%;height:auto}
    """

    static let script = """
    (function(){
    var body=document.body;var errors=0;
    window.addEventListener('error',function(){errors++;body.setAttribute('data-errors',String(errors));});
    function key(td){var v=td.getAttribute('data-v');return v===null?td.textContent:parseFloat(v);}
    document.querySelectorAll('table.sortable').forEach(function(table){
      table.querySelectorAll('th').forEach(function(th,col){
        th.addEventListener('click',function(){
          var dir=th.getAttribute('aria-sort')==='descending'?'ascending':'descending';
          table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
          th.setAttribute('aria-sort',dir);
          var tbody=table.tBodies[0];var rows=Array.prototype.slice.call(tbody.rows);
          rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
            var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));
            return dir==='ascending'?c:-c;});
          rows.forEach(function(r){tbody.appendChild(r);});
        });
      });
    });
    var box=document.getElementById('hover');
    document.querySelectorAll('svg [data-name]').forEach(function(el){
      el.addEventListener('mouseenter',function(){
        box.textContent='';
        [['',el.getAttribute('data-name')],['kind ',el.getAttribute('data-kind')],['size ',el.getAttribute('data-size')],
         ['lifetime ',el.getAttribute('data-life')],['tier ',el.getAttribute('data-tier')+' '+el.getAttribute('data-at')]].forEach(function(p,i){
          var line=document.createElement(i===0?'b':'div');line.textContent=p[0]+p[1];box.appendChild(line);});
        box.style.display='block';
      });
      el.addEventListener('mouseleave',function(){box.style.display='none';});
    });
    body.setAttribute('data-ready','1');
    if(location.hash==='#selftest'){
      var result='pass';
      try{
        var b=document.querySelector('svg [data-name]');
        if(b){b.dispatchEvent(new MouseEvent('mouseenter'));
          if(box.style.display!=='block'||box.textContent.indexOf(b.getAttribute('data-name'))<0)result='fail: hover box';}
        document.querySelectorAll('table.sortable').forEach(function(table){
          var th=table.querySelector('th.n');if(!th)return;
          var col=Array.prototype.indexOf.call(th.parentNode.children,th);th.click();
          var v=Array.prototype.map.call(table.tBodies[0].rows,function(r){return key(r.cells[col]);});
          for(var i=1;i<v.length;i++){if(v[i-1]<v[i])result='fail: sorting '+th.textContent;}
        });
      }catch(e){result='fail: '+e;}
      body.setAttribute('data-selftest',result);
    }
    })();
    """

    /// The page for `plan` (deterministic: same plan, same bytes).
    public static func render(_ plan: Plan) -> String {
        let inspection = PlanInspection(plan, limit: Int.max)
        var html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(Markup.escape("kvplan: \(plan.model) on \(plan.target.name)"))</title>
        <style>\(style)</style></head>
        <body data-ready="0" data-errors="0">
        <div id="hover" role="status"></div>

        """
        html += "<h1>\(Markup.escape("\(plan.model) on \(plan.target.name)"))</h1>\n"
        var solver = "\(plan.solver.method): \(plan.solver.status)"
        if let gap = plan.solver.gap { solver += String(format: ", gap %.2f%%", gap * 100) }
        html += "<p class=\"muted\">\(Markup.escape("\(plan.steps.count) steps, \(plan.values.count) values, \(plan.transfers.count) transfers, objective \(plan.objective) — \(solver)"))</p>\n"
        html += summary(inspection)
        html += "<h2>Memory timeline</h2>\n<p class=\"muted\">Hover a buffer for its name, size, lifetime and tier.</p>\n"
        html += TimelineSVG.render(plan)
        html += "<h2>Ops (\(inspection.costliestOps.count))</h2>\n"
        html += sortable([("op", false), ("kind", false), ("steps", true), ("flop", true), ("compute", true), ("slot time", true), ("moved", true), ("bound by", false)],
                         inspection.costliestOps.map { o in
            [Cell(o.name), Cell(o.kind), Cell(o.scheme.map { "\(o.steps) \($0)" } ?? "\(o.steps)", sort: Double(o.steps)),
             Cell(siCount(Double(o.flops)), sort: Double(o.flops)), Cell(seconds: o.computeSeconds), Cell(seconds: o.slotSeconds),
             Cell(bytes: o.transferBytes), Cell(o.bound)]
        })
        let tensors = TensorSummary.rows(plan)
        html += "<h2>Tensors (\(tensors.count))</h2>\n"
        html += sortable([("tensor", false), ("kind", false), ("bytes", true), ("tiles", true), ("home", false), ("lives in", false), ("transfers", true), ("moved", true)],
                         tensors.map { t in
            [Cell(t.name), Cell(t.kind.rawValue), Cell(bytes: t.bytes), Cell(count: t.parts), Cell(t.home), Cell(t.tiers),
             Cell(count: t.transfers), Cell(bytes: t.movedBytes)]
        })
        html += "<h2>Transfers (\(inspection.costliestTransfers.count))</h2>\n"
        html += sortable([("value", false), ("link", false), ("bytes", true), ("slot", true), ("step", false), ("reason", false), ("time", true), ("waits", false)],
                         inspection.costliestTransfers.map { t in
            [Cell(t.value), Cell("\(t.from)->\(t.to)"), Cell(bytes: t.bytes), Cell(count: t.slot), Cell(t.step), Cell(t.reason),
             Cell(seconds: t.seconds), Cell(t.serial ? "yes" : "no")]
        })
        html += "<script>\(script)</script>\n</body></html>\n"
        return html
    }

    /// Tiers, links, time against baselines and the KV layout.
    static func summary(_ i: PlanInspection) -> String {
        var html = "<h2>Tiers and links</h2>\n"
        html += table([("tier", false), ("capacity", true), ("peak", true), ("use", true), ("values", true), ("alignment", true)], i.tiers.map { t in
            [Cell(t.name), Cell(bytes: t.capacity), Cell(bytes: t.peakBytes),
             Cell(t.capacity > 0 ? String(format: "%.1f%%", Double(t.peakBytes) / Double(t.capacity) * 100) : "–"), Cell(count: t.values), Cell("\(t.alignment) B")]
        }, sortable: false)
        html += table([("link", false), ("bandwidth", true), ("latency", true), ("transfers", true), ("bytes", true), ("busy", true)], i.links.map { l in
            [Cell("\(l.from)->\(l.to)"), Cell(String(format: "%.3g GB/s", l.bandwidth / 1e9)), Cell(seconds: l.latency), Cell(count: l.transfers),
             Cell(bytes: l.bytes), Cell(seconds: l.busySeconds)]
        }, sortable: false)
        let e = i.estimate
        html += "<h2>Time</h2>\n<p>\(Markup.escape("Estimated \(formatSeconds(e.seconds)) (compute alone \(formatSeconds(e.computeSeconds))"))"
        if let bound = e.lowerBoundSeconds, bound > 0 {
            html += Markup.escape(String(format: "; lower bound \(formatSeconds(bound)), this plan %.1f%% above", (e.seconds / bound - 1) * 100))
        }
        html += Markup.escape("). Traffic \(bytes(e.compulsoryBytes + e.nonCompulsoryBytes)): compulsory \(humanBytes(Double(e.compulsoryBytes))), non-compulsory \(humanBytes(Double(e.nonCompulsoryBytes))).") + "</p>\n"
        if !i.baselines.isEmpty {
            var rows = [[Cell("this plan (\(i.solver.method))"), Cell(seconds: e.seconds), Cell(bytes: e.nonCompulsoryBytes), Cell(""), Cell("")]]
            for b in i.baselines {
                rows.append([Cell(b.method), Cell(seconds: b.seconds), Cell(bytes: b.nonCompulsoryBytes),
                             Cell(String(format: "%.1f%%", b.timeSaved * 100), sort: b.timeSaved),
                             Cell((b.bytesSaved < 0 ? "-" : "") + humanBytes(Double(abs(b.bytesSaved))), sort: Double(b.bytesSaved))])
            }
            html += table([("method", false), ("time", true), ("non-compulsory bytes", true), ("this plan saves (time)", true), ("(bytes)", true)], rows, sortable: false)
        }
        if let kv = i.kv {
            html += "<h2>KV cache</h2>\n<p>\(Markup.escape("\(kv.policy)\(kv.precision.map { ", precision \($0)" } ?? "") (\(kv.status)); budget \(bytes(kv.budget)) from \(kv.budgetSource); profile \(kv.profile); uses \(bytes(kv.bytes)), fidelity " + String(format: "%.4f", kv.fidelity)))</p>\n"
            html += table([("layer", true), ("sink+window", true), ("high", true), ("K/V bits", false), ("rest", false), ("bytes", true), ("mass", true), ("fidelity", true), ("home", false)],
                          kv.layers.map { l in
                [Cell(count: l.layer), Cell(count: l.sinkTokens + l.windowTokens), Cell(count: l.highTokens), Cell("\(l.keyBitsHigh)/\(l.valueBitsHigh)"),
                 Cell(KVLayerText.rest(l)), Cell(grouped(l.bytes), sort: Double(l.bytes)), Cell(l.retainedMass.map { String(format: "%.4f", $0) } ?? "–", sort: l.retainedMass),
                 Cell(String(format: "%.4f", l.fidelity), sort: l.fidelity), Cell(KVLayerText.homes(l, tiers: i.tiers.map(\.name)))]
            }, sortable: false)
        }
        return html
    }

    static func sortable(_ columns: [(String, Bool)], _ rows: [[Cell]]) -> String {
        "<div class=\"scroll\">" + table(columns, rows, sortable: true) + "</div>\n"
    }

    static func table(_ columns: [(String, Bool)], _ rows: [[Cell]], sortable: Bool) -> String {
        var html = "<table\(sortable ? " class=\"sortable\"" : "")><thead><tr>"
        for (name, numeric) in columns { html += "<th\(numeric ? " class=\"n\"" : "")>\(Markup.escape(name))</th>" }
        html += "</tr></thead><tbody>\n"
        for row in rows {
            html += "<tr>"
            for (k, cell) in row.enumerated() {
                let numeric = k < columns.count && columns[k].1
                let sortValue = cell.sort.map { " data-v=\"\($0)\"" } ?? ""
                html += "<td\(numeric ? " class=\"n\"" : "")\(sortValue)>\(Markup.escape(cell.text))</td>"
            }
            html += "</tr>\n"
        }
        return html + "</tbody></table>\n"
    }
}
