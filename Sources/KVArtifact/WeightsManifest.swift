import Foundation

/// The weights an artifact needs (`weights.json`): every weight tensor's name, type, shape, bytes
/// and home, so a checkpoint can be checked or converted without reading the plan.
public struct WeightsManifest: Codable, Sendable, Equatable {
    /// One weight tensor.
    public struct Entry: Codable, Sendable, Equatable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var bytes: Int
        /// The tier it lives in between steps, and its offset there when the schedule fixes one.
        public var home: String
        public var offset: Int?
        /// How its bytes are arranged when not row by row (the schedule binding's layout, e.g.
        /// `q4_0x16`: 16 rows interleaved for the generated GEMV; the same bytes, reordered).
        public var layout: String?
        public init(name: String, dtype: String, shape: [Int], bytes: Int, home: String, offset: Int?, layout: String? = nil) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
            self.home = home
            self.offset = offset
            self.layout = layout
        }
    }

    public var model: String
    public var totalBytes: Int
    public var tensors: [Entry]

    /// The manifest of `plan`'s weights over `program`, with offsets from `schedule` when given.
    public init(program: ModelProgram, plan: Plan, schedule: ExecutionSchedule?) {
        let placed = Dictionary((schedule?.weights ?? []).map { ($0.tensor, $0.location.offset) }, uniquingKeysWith: { a, _ in a })
        let layouts = Dictionary((schedule?.weights ?? []).compactMap { b in b.layout.map { (b.tensor, $0) } }, uniquingKeysWith: { a, _ in a })
        let values = Dictionary(plan.values.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        model = program.model
        tensors = program.tensors.filter { $0.kind == "weight" }.map { t in
            let v = values[t.name]
            return Entry(name: t.name, dtype: t.dtype, shape: t.shape, bytes: v?.bytes ?? 0,
                         home: v?.home.map { plan.target.tiers[$0].name } ?? "-", offset: placed[t.name], layout: layouts[t.name])
        }
        totalBytes = tensors.reduce(0) { $0 + $1.bytes }
    }

    /// Deterministic JSON (sorted keys, pretty-printed).
    public func encoded() throws -> Data {
        try ArtifactJSON.encode(self)
    }
}
