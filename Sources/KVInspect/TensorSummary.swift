import KVArtifact

// What each tensor does in a plan, summed over its tiles: kind, bytes, tile count, home tier, the
// tiers it lives in, its transfers and bytes moved. The HTML report's tensor table and
// `inspect --diff`'s changed tensors are both read off these rows.

/// Per-tensor figures of a plan.
enum TensorSummary {
    /// One tensor's life in the plan.
    struct Row {
        var name: String
        var kind: ValueKind
        var bytes: Int
        var parts: Int
        var home: String
        var tiers: String
        var transfers: Int
        var movedBytes: Int
    }

    /// Every tensor: its kind, bytes, tiles, home, the tiers it lives in and what it moves.
    static func rows(_ plan: Plan) -> [Row] {
        var order: [String] = []
        var rows: [String: Row] = [:]
        var tiersOf: [String: Set<Int>] = [:]
        var tensorOf: [Int: String] = [:]
        for (v, value) in plan.values.enumerated() {
            tensorOf[v] = value.tensor
            if rows[value.tensor] == nil {
                order.append(value.tensor)
                rows[value.tensor] = Row(name: value.tensor, kind: value.kind, bytes: 0, parts: 0,
                                               home: value.home.map { plan.target.tiers[$0].name } ?? "–", tiers: "", transfers: 0, movedBytes: 0)
            }
            rows[value.tensor]!.bytes += value.bytes
            rows[value.tensor]!.parts += 1
        }
        for r in plan.residencies { if let t = tensorOf[r.value] { tiersOf[t, default: []].insert(r.tier) } }
        for t in plan.transfers {
            guard let name = tensorOf[t.value] else { continue }
            rows[name]!.transfers += 1
            rows[name]!.movedBytes += t.bytes
        }
        return order.map { name in
            var row = rows[name]!
            row.tiers = (tiersOf[name] ?? []).sorted().map { plan.target.tiers[$0].name }.joined(separator: "+")
            return row
        }
    }
}
