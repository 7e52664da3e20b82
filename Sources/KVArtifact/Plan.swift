import Foundation

/// A placement plan on disk (plan.json): what lives where at every slot, and every transfer.
///
/// Time is counted in *slots*: slot 0 is the prologue, and step `i` computes during slot `i + 1`,
/// while the transfers issued in that slot run alongside it. A value loaded in slot `t` can be used
/// by the step computing in slot `t + 1` or later. See Docs/plan-format.md.
public struct Plan: Codable, Sendable, Equatable {
    /// The schema version this build writes and reads.
    public static let currentVersion = 1

    /// Schema version of this plan.
    public var version: Int
    /// Model (graph) name.
    public var model: String
    /// The target the plan was made for.
    public var target: PlanTarget
    /// `time` or `traffic`.
    public var objective: String
    /// How the plan was made and how good it is known to be.
    public var solver: SolverSummary
    /// Values: tensors or tiles of tensors, each a unit of placement.
    public var values: [Value]
    /// Steps in execution order.
    public var steps: [Step]
    /// Intervals during which a value occupies a tier (with its offset there).
    public var residencies: [Residency]
    /// Copies between tiers.
    public var transfers: [Transfer]
    /// Estimated time, traffic and peaks.
    public var estimate: Estimate
    /// The same estimates for each baseline planned on the same problem.
    public var baselines: [BaselineSummary]
    /// The KV budget pass's per-layer layouts, when it ran (absent otherwise).
    public var kv: KVReport?

    /// Creates a plan of the current version.
    public init(model: String, target: PlanTarget, objective: String, solver: SolverSummary, values: [Value],
                steps: [Step], residencies: [Residency], transfers: [Transfer], estimate: Estimate,
                baselines: [BaselineSummary]) {
        version = Plan.currentVersion
        self.model = model
        self.target = target
        self.objective = objective
        self.solver = solver
        self.values = values
        self.steps = steps
        self.residencies = residencies
        self.transfers = transfers
        self.estimate = estimate
        self.baselines = baselines
    }

    /// The number of slots (prologue + one per step + epilogue).
    public var slotCount: Int { steps.count + 2 }

    /// Deterministic JSON (sorted keys, two-space indentation, trailing newline).
    public func encoded() throws -> Data {
        var data = try ArtifactJSON.encode(self)
        data.append(0x0A)
        return data
    }

    /// Decodes a plan, refusing other schema versions.
    public static func decode(_ data: Data) throws -> Plan {
        struct VersionOnly: Decodable { var version: Int }
        let version = try JSONDecoder().decode(VersionOnly.self, from: data).version
        guard version == currentVersion else { throw PlanFormatError.unsupportedVersion(version) }
        return try JSONDecoder().decode(Plan.self, from: data)
    }
}

/// Why a plan file could not be read.
public enum PlanFormatError: Error, CustomStringConvertible, Equatable {
    case unsupportedVersion(Int)

    public var description: String {
        switch self {
        case let .unsupportedVersion(v): "plan.json has schema version \(v); this kvplan reads version \(Plan.currentVersion)"
        }
    }
}

/// The target's tiers and links as the plan used them.
public struct PlanTarget: Codable, Sendable, Equatable {
    /// One memory tier.
    public struct Tier: Codable, Sendable, Equatable {
        public var name: String
        public var capacity: Int
        public var alignment: Int
        public init(name: String, capacity: Int, alignment: Int) {
            self.name = name
            self.capacity = capacity
            self.alignment = alignment
        }
    }
    /// One directed link.
    public struct Link: Codable, Sendable, Equatable {
        public var from: String
        public var to: String
        public var bandwidth: Double
        public var latency: Double
        public init(from: String, to: String, bandwidth: Double, latency: Double) {
            self.from = from
            self.to = to
            self.bandwidth = bandwidth
            self.latency = latency
        }
    }
    public var name: String
    /// Tiers, fastest first; tier 0 is where steps compute.
    public var tiers: [Tier]
    public var links: [Link]
    public init(name: String, tiers: [Tier], links: [Link]) {
        self.name = name
        self.tiers = tiers
        self.links = links
    }
}

/// The planner that made the plan and what it proved.
public struct SolverSummary: Codable, Sendable, Equatable {
    /// `ilp`, `naive`, `lru`, `belady`, `msa`.
    public var method: String
    /// `optimal`, `feasible`, `heuristic`.
    public var status: String
    /// Relative gap to the best bound, when one is known.
    public var gap: Double?
    /// How the operator order was chosen (`--schedule optimize`), absent for the source order.
    public var order: String?
    /// The ILP's LP bound on the estimated time of any plan (seconds; free-boundary windows), when computed.
    public var lpBoundSeconds: Double?
    // Planning time is reported by the command, not stored: plans are byte-identical per input.
    public init(method: String, status: String, gap: Double?, order: String? = nil) {
        self.method = method
        self.status = status
        self.gap = gap
        self.order = order
    }
}

/// What a value is.
public enum ValueKind: String, Codable, Sendable, CaseIterable {
    case weight, input, activation, cache, output
}

/// A unit of placement: a whole tensor or one tile of it.
public struct Value: Codable, Sendable, Equatable {
    /// Unique name (`tensor` or `tensor#tile`).
    public var name: String
    /// The tensor it belongs to.
    public var tensor: String
    public var kind: ValueKind
    /// Bytes it occupies (before tier alignment).
    public var bytes: Int
    /// Tier index holding it outside the compute tier; nil for activations until they are spilled.
    public var home: Int?
    /// Whether its final contents must end in its home tier (outputs, updated caches).
    public var mustPersist: Bool
    /// Which block of its tensor a tile value is (absent for a whole tensor).
    public var part: ValuePart?
    public init(name: String, tensor: String, kind: ValueKind, bytes: Int, home: Int?, mustPersist: Bool, part: ValuePart? = nil) {
        self.name = name
        self.tensor = tensor
        self.kind = kind
        self.bytes = bytes
        self.home = home
        self.mustPersist = mustPersist
        self.part = part
    }
}

/// The block of a tensor one tile value holds: indices `[start, end)` along dimension `dim`, or
/// elements `[start, end)` in row-major order when `dim` is -1 (a cut that is contiguous in the
/// tensor). A part is stored contiguously wherever it lives: a cut along an inner dimension is
/// the sub-block `[outer, end - start, inner]` in row-major order.
public struct ValuePart: Codable, Sendable, Equatable, Hashable {
    public var dim: Int
    public var start: Int
    public var end: Int
    public init(dim: Int, start: Int, end: Int) {
        self.dim = dim
        self.start = start
        self.end = end
    }

    /// Where the tiling pass cuts an axis of `length` into `tiles` near-equal ranges: at
    /// length·j/tiles, or at multiples of `granule` when it divides the length (a q8_0 / q4_0
    /// weight's 32-value blocks along a reduction). Generated tile kernels find their range here too.
    public static func cut(_ j: Int, of tiles: Int, length: Int, granule: Int = 1) -> Int {
        let g = granule > 1 && length % granule == 0 ? granule : 1
        return length / g * j / tiles * g
    }
}

/// One kernel invocation: an op or one tile of it.
public struct Step: Codable, Sendable, Equatable {
    public var name: String
    /// Op kind (`matmul`, `attention`, ...).
    public var op: String
    /// Tile index within the op, when tiled, and the tile count.
    public var tile: Int?
    public var tiles: Int?
    /// Value indices read and written (a value both read and written is updated in place).
    public var reads: [Int]
    public var writes: [Int]
    public var flops: Int
    /// Estimated compute seconds.
    public var computeSeconds: Double
    /// How a tiled op is split (`columns`, `reduction`, `tokens`, `queries`, `rows`, `length`,
    /// `channels`); absent for an op computed whole.
    public var scheme: String?
    public init(name: String, op: String, tile: Int?, tiles: Int?, reads: [Int], writes: [Int], flops: Int, computeSeconds: Double,
                scheme: String? = nil) {
        self.scheme = scheme
        self.name = name
        self.op = op
        self.tile = tile
        self.tiles = tiles
        self.reads = reads
        self.writes = writes
        self.flops = flops
        self.computeSeconds = computeSeconds
    }
}

/// A value occupying a tier over the half-open slot range `[from, to)`.
public struct Residency: Codable, Sendable, Equatable {
    public var value: Int
    public var tier: Int
    public var from: Int
    public var to: Int
    /// Byte offset inside the tier (scratchpad only; nil elsewhere).
    public var offset: Int?
    public init(value: Int, tier: Int, from: Int, to: Int, offset: Int?) {
        self.value = value
        self.tier = tier
        self.from = from
        self.to = to
        self.offset = offset
    }
}

/// A copy of a value from one tier to another, issued in a slot.
public struct Transfer: Codable, Sendable, Equatable {
    public var value: Int
    public var from: Int
    public var to: Int
    public var bytes: Int
    public var slot: Int
    /// `load` (into the compute tier), `store` (write-back of a result needed later or at the end), `spill`.
    public var reason: String
    public init(value: Int, from: Int, to: Int, bytes: Int, slot: Int, reason: String) {
        self.value = value
        self.from = from
        self.to = to
        self.bytes = bytes
        self.slot = slot
        self.reason = reason
    }
}

/// Estimated cost of a plan.
public struct Estimate: Codable, Sendable, Equatable {
    /// Σ over slots of max(compute, transfer time per link).
    public var seconds: Double
    /// Σ compute time alone (the bound no placement beats).
    public var computeSeconds: Double
    /// Bytes moved per link, keyed `from->to`.
    public var linkBytes: [String: Int]
    /// Bytes every plan must move: each read-before-written value loaded once, each persisting value stored once.
    public var compulsoryBytes: Int
    /// Bytes moved beyond the compulsory ones (COSMA's measure).
    public var nonCompulsoryBytes: Int
    /// Peak bytes per tier over all slots.
    public var peakBytes: [Int]
    /// A time no plan beats: max(Σ compute, per link the time of its compulsory transfers) (absent in older plans).
    public var lowerBoundSeconds: Double?
    public init(seconds: Double, computeSeconds: Double, linkBytes: [String: Int], compulsoryBytes: Int,
                nonCompulsoryBytes: Int, peakBytes: [Int], lowerBoundSeconds: Double? = nil) {
        self.lowerBoundSeconds = lowerBoundSeconds
        self.seconds = seconds
        self.computeSeconds = computeSeconds
        self.linkBytes = linkBytes
        self.compulsoryBytes = compulsoryBytes
        self.nonCompulsoryBytes = nonCompulsoryBytes
        self.peakBytes = peakBytes
    }
}

/// A baseline's figures on the same problem.
public struct BaselineSummary: Codable, Sendable, Equatable {
    public var method: String
    public var estimate: Estimate
    public init(method: String, estimate: Estimate) {
        self.method = method
        self.estimate = estimate
    }
}
