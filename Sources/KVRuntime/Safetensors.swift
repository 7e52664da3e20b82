import Foundation
import KVArtifact

// Safetensors: 8 bytes little-endian header length N, N bytes of JSON
// ({name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}), then the
// data, offsets relative to its start. Every entry is checked (dtype known, offsets inside the
// file, byte count = elements × element size) before a byte is converted, so a truncated or
// hostile file is refused with the tensor's name, never read out of bounds.

/// A safetensors file: its tensors' metadata and their data as f32.
public struct SafetensorsFile {
    /// One tensor's entry in the header.
    public struct Entry: Sendable, Equatable {
        public var dtype: String
        public var shape: [Int]
        public var begin: Int
        public var end: Int
    }

    public let path: String
    public let entries: [String: Entry]
    private let data: Data
    private let dataStart: Int

    /// Reads and checks the header of the file at `path`.
    public init(path: String) throws(RuntimeError) {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path) else { throw RuntimeError("cannot read '\(path)'") }
        self.data = data
        guard data.count >= 8 else { throw RuntimeError("\(path): \(data.count) bytes; a safetensors file starts with an 8-byte header length") }
        let n = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= UInt64(data.count - 8) else { throw RuntimeError("\(path): header length \(n) exceeds the file (\(data.count) bytes)") }
        dataStart = 8 + Int(n)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart)) } catch {
            throw RuntimeError("\(path): the header is not JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else { throw RuntimeError("\(path): the header is not a JSON object") }
        var entries: [String: Entry] = [:]
        let available = data.count - dataStart
        for (name, value) in header where name != "__metadata__" {
            guard let e = value as? [String: Any], let dtype = e["dtype"] as? String, let shape = e["shape"] as? [Int],
                  let offsets = e["data_offsets"] as? [Int], offsets.count == 2 else {
                throw RuntimeError("\(path): tensor '\(name)': expected dtype, shape and data_offsets [begin, end]")
            }
            guard let size = Self.elementSize[dtype] else {
                throw RuntimeError("\(path): tensor '\(name)' is \(dtype); readable: \(Self.elementSize.keys.sorted().joined(separator: ", "))")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= available else {
                throw RuntimeError("\(path): tensor '\(name)': data_offsets [\(begin), \(end)] are outside the \(available) data bytes")
            }
            // Dimensions are checked and multiplied with overflow reported: a hostile shape must
            // not trap (or wrap round to a size that matches the data).
            guard shape.allSatisfy({ $0 >= 0 }) else { throw RuntimeError("\(path): tensor '\(name)': shape \(shape) has a negative dimension") }
            var bytes = size, overflow = false
            for n in shape where !overflow { (bytes, overflow) = bytes.multipliedReportingOverflow(by: n) }
            guard !overflow else { throw RuntimeError("\(path): tensor '\(name)': shape \(shape) has more elements than memory can address") }
            guard end - begin == bytes else {
                throw RuntimeError("\(path): tensor '\(name)' \(dtype)\(shape) needs \(bytes) bytes, has \(end - begin)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, begin: begin, end: end)
        }
        self.entries = entries
    }

    /// Bytes per element of the readable dtypes.
    public static let elementSize: [String: Int] = ["F32": 4, "F16": 2, "BF16": 2]

    /// The tensor `name` as f32 (f16 and bf16 widened exactly).
    public func floats(_ name: String) throws(RuntimeError) -> [Float] {
        guard let e = entries[name] else { throw RuntimeError("\(path): no tensor '\(name)'") }
        let bytes = data.subdata(in: (dataStart + e.begin)..<(dataStart + e.end))
        return bytes.withUnsafeBytes { raw -> [Float] in
            switch e.dtype {
            case "F32":
                return (0..<raw.count / 4).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
            case "F16":
                return (0..<raw.count / 2).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self).littleEndian)) }
            default:  // BF16: the high half of an f32
                return (0..<raw.count / 2).map { Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self).littleEndian) << 16) }
            }
        }
    }
}

/// Hugging Face checkpoint names for the tensor names kvplan's importer gives (HFImporter).
public enum HFTensorNames {
    /// Candidate checkpoint names for a graph tensor, most likely first (`q_proj[3]` →
    /// `model.layers.3.self_attn.q_proj.weight`; `lm_head` falls back to the tied embedding).
    public static func candidates(_ graphName: String) -> [String] {
        var base = graphName
        var layer: String?
        if let open = graphName.firstIndex(of: "["), graphName.hasSuffix("]") {
            base = String(graphName[..<open])
            layer = String(graphName[graphName.index(after: open)..<graphName.index(before: graphName.endIndex)])
        }
        if let l = layer {
            let llama: [String: String] = [
                "input_layernorm": "input_layernorm.weight", "post_attention_layernorm": "post_attention_layernorm.weight",
                "q_proj": "self_attn.q_proj.weight", "k_proj": "self_attn.k_proj.weight", "v_proj": "self_attn.v_proj.weight",
                "o_proj": "self_attn.o_proj.weight", "q_bias": "self_attn.q_proj.bias", "k_bias": "self_attn.k_proj.bias",
                "v_bias": "self_attn.v_proj.bias", "o_bias": "self_attn.o_proj.bias",
                "gate_proj": "mlp.gate_proj.weight", "up_proj": "mlp.up_proj.weight", "down_proj": "mlp.down_proj.weight",
                "gate_bias": "mlp.gate_proj.bias", "up_bias": "mlp.up_proj.bias", "down_bias": "mlp.down_proj.bias",
            ]
            let gpt2: [String: String] = [
                "ln_1_weight": "ln_1.weight", "ln_1_bias": "ln_1.bias", "ln_2_weight": "ln_2.weight", "ln_2_bias": "ln_2.bias",
                "c_attn_weight": "attn.c_attn.weight", "c_attn_bias": "attn.c_attn.bias",
                "attn_c_proj_weight": "attn.c_proj.weight", "attn_c_proj_bias": "attn.c_proj.bias",
                "c_fc_weight": "mlp.c_fc.weight", "c_fc_bias": "mlp.c_fc.bias",
                "mlp_c_proj_weight": "mlp.c_proj.weight", "mlp_c_proj_bias": "mlp.c_proj.bias",
            ]
            if let suffix = llama[base] { return ["model.layers.\(l).\(suffix)"] }
            if let suffix = gpt2[base] { return ["transformer.h.\(l).\(suffix)", "h.\(l).\(suffix)"] }
            return [graphName]
        }
        switch base {
        case "embed_tokens": return ["model.embed_tokens.weight"]
        case "norm": return ["model.norm.weight"]
        case "lm_head": return ["lm_head.weight", "model.embed_tokens.weight"]
        case "wte", "wpe": return ["transformer.\(base).weight", "\(base).weight"]
        case "ln_f_weight": return ["transformer.ln_f.weight", "ln_f.weight"]
        case "ln_f_bias": return ["transformer.ln_f.bias", "ln_f.bias"]
        default: return [graphName]
        }
    }
}

/// Weights for a program from a Hugging Face safetensors checkpoint.
public enum CheckpointWeights {
    /// The row-major multi-index of flat element `flat` in `shape`, as "[i, j, …]".
    static func index(_ flat: Int, shape: [Int]) -> String {
        var rest = flat, digits: [Int] = []
        for n in shape.reversed() { digits.append(rest % max(n, 1)); rest /= max(n, 1) }
        return "[" + digits.reversed().map(String.init).joined(separator: ", ") + "]"
    }

    /// Every weight tensor of `program`, read by its HF name and checked against its shape.
    public static func load(_ program: ModelProgram, from file: SafetensorsFile) throws(RuntimeError) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for t in program.tensors where t.kind == "weight" {
            let names = HFTensorNames.candidates(t.name)
            guard let name = names.first(where: { file.entries[$0] != nil }) else {
                throw RuntimeError("\(file.path): no tensor for '\(t.name)' (looked for \(names.joined(separator: ", ")))")
            }
            let entry = file.entries[name]!
            guard entry.shape == t.checkpointShape else {
                let stored = t.storedTransposed == true ? " (stored transposed: the checkpoint should hold \(t.checkpointShape))" : ""
                throw RuntimeError("\(file.path): '\(name)' has shape \(entry.shape); '\(t.name)' in the program is \(t.shape)\(stored)")
            }
            let values = try file.floats(name)
            // A NaN or infinite weight would only surface as broken logits steps later.
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw RuntimeError("\(file.path): '\(name)' element \(bad) (index \(Self.index(bad, shape: entry.shape))) is \(values[bad]); weights must be finite")
            }
            out[t.name] = t.fromCheckpoint(values)
        }
        return out
    }
}


extension SafetensorsFile {
    /// Writes a safetensors file (tensors in the given order, keys sorted in the header by the reader's tools).
    public static func write(_ tensors: [(name: String, dtype: String, shape: [Int], bytes: [UInt8])], to path: String) throws {
        var offset = 0
        var entries: [String] = []
        var data: [UInt8] = []
        for t in tensors {
            let name = String(decoding: try JSONEncoder().encode(t.name), as: UTF8.self)
            entries.append("\(name):{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
            offset += t.bytes.count
            data += t.bytes
        }
        let header = Array(("{\"__metadata__\":{\"format\":\"pt\"}" + entries.map { "," + $0 }.joined() + "}").utf8)
        let prefix = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64($0))) }
        try Data(prefix + header + data).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// f32 values as little-endian bytes (for `write`).
    public static func bytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * $0)) } }
    }
}

extension ModelProgram.Tensor {
    /// `values` in the checkpoint's layout (`checkpointShape`, row-major) as this tensor's: the
    /// transpose of the [in, out] matrix for a weight stored transposed, else `values` unchanged.
    public func fromCheckpoint(_ values: [Float]) -> [Float] {
        guard storedTransposed == true, shape.count == 2 else { return values }
        let (rows, columns) = (shape[0], shape[1])  // the checkpoint holds columns × rows
        var out = [Float](repeating: 0, count: values.count)
        for c in 0..<columns {
            for r in 0..<rows { out[r * columns + c] = values[c * rows + r] }
        }
        return out
    }

    /// This tensor's `values` in the checkpoint's layout (the inverse of fromCheckpoint).
    public func toCheckpoint(_ values: [Float]) -> [Float] {
        guard storedTransposed == true, shape.count == 2 else { return values }
        let (rows, columns) = (shape[0], shape[1])
        var out = [Float](repeating: 0, count: values.count)
        for r in 0..<rows {
            for c in 0..<columns { out[c * rows + r] = values[r * columns + c] }
        }
        return out
    }
}
