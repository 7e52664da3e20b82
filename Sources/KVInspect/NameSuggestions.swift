// "Did you mean" for names typed on the command line: the known names closest by edit distance
// (Levenshtein, case-insensitive), then those that contain what was typed.

/// Known names close to a mistyped one.
public enum NameSuggestions {
    /// Up to `limit` of `known` closest to `typed`, nearest first (ties in `known`'s order).
    public static func nearest(_ typed: String, in known: [String], limit: Int = 3) -> [String] {
        let t = Array(typed.lowercased())
        let containing = known.filter { $0.lowercased().contains(typed.lowercased()) }
        let ranked = known.enumerated().map { (i, name) in (distance(t, Array(name.lowercased())), i, name) }
            .filter { $0.0 <= max(2, t.count / 3) }
            .sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map(\.2)
        var seen = Set<String>()
        return (ranked + containing).filter { seen.insert($0).inserted }.prefix(limit).map { $0 }
    }

    /// Levenshtein distance.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count), current = previous
        for i in 1...a.count {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
