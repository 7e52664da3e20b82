import Foundation
import KVArtifact
import KVRuntime
import Testing

/// Writes a safetensors file, or, with `header`, that raw header and no data (for hostile files).
func writeSafetensors(_ tensors: [(name: String, dtype: String, shape: [Int], bytes: [UInt8])], to path: String, header: String? = nil) throws {
    guard let header else { return try SafetensorsFile.write(tensors, to: path) }
    let raw = Array(header.utf8)
    try Data((0..<8).map { UInt8(truncatingIfNeeded: UInt64(raw.count) >> (8 * UInt64($0))) } + raw).write(to: URL(fileURLWithPath: path))
}

func littleEndian<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}

@Suite("Safetensors and Hugging Face names")
struct SafetensorsTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kvplan-safetensors-\(getpid())")

    @Test("f32, f16 and bf16 are read exactly; names map from the importer's")
    func read() throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("a.safetensors").path
        let f32: [Float] = [1.5, -2, 3.25]
        let f16: [Float16] = [0.5, -1, 65504]
        let bf16: [UInt16] = [0x3F80, 0xC040]  // 1.0, -3.0
        try writeSafetensors([
            ("model.layers.0.self_attn.q_proj.weight", "F32", [3], littleEndian(f32.map(\.bitPattern))),
            ("h", "F16", [3], littleEndian(f16.map(\.bitPattern))),
            ("b", "BF16", [2], littleEndian(bf16)),
        ], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(try file.floats("model.layers.0.self_attn.q_proj.weight") == f32)
        #expect(try file.floats("h") == [0.5, -1, 65504])
        #expect(try file.floats("b") == [1, -3])
        #expect(HFTensorNames.candidates("q_proj[0]") == ["model.layers.0.self_attn.q_proj.weight"])
        #expect(HFTensorNames.candidates("lm_head") == ["lm_head.weight", "model.embed_tokens.weight"])
        #expect(HFTensorNames.candidates("c_attn_weight[11]").first == "transformer.h.11.attn.c_attn.weight")
    }

    @Test("truncated, lying or unknown-dtype files are refused by tensor name")
    func hostile() throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("bad.safetensors").path
        try writeSafetensors([("w", "F32", [4], littleEndian([UInt32](repeating: 0, count: 3)))], to: path)
        #expect(throws: RuntimeError("\(path): tensor 'w' F32[4] needs 16 bytes, has 12")) { try SafetensorsFile(path: path) }
        try writeSafetensors([], to: path, header: "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}")
        #expect(throws: RuntimeError("\(path): tensor 'w': data_offsets [0, 4] are outside the 0 data bytes")) { try SafetensorsFile(path: path) }
        try writeSafetensors([("w", "I64", [1], [UInt8](repeating: 0, count: 8))], to: path)
        #expect(throws: RuntimeError("\(path): tensor 'w' is I64; readable: BF16, F16, F32")) { try SafetensorsFile(path: path) }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(throws: RuntimeError("\(path): 3 bytes; a safetensors file starts with an 8-byte header length")) { try SafetensorsFile(path: path) }
        // Shapes: a negative dimension, and one whose element count overflows (it used to trap).
        try writeSafetensors([("w", "F32", [-1, 4], [UInt8](repeating: 0, count: 16))], to: path)
        #expect(throws: RuntimeError("\(path): tensor 'w': shape [-1, 4] has a negative dimension")) { try SafetensorsFile(path: path) }
        try writeSafetensors([("w", "F32", [1 << 40, 1 << 40], [UInt8](repeating: 0, count: 4))], to: path)
        #expect(throws: RuntimeError("\(path): tensor 'w': shape [1099511627776, 1099511627776] has more elements than memory can address")) {
            try SafetensorsFile(path: path)
        }
    }

    @Test("a weight stored transposed (GPT-2 Conv1D under --weight-dtype) is read from its [in, out] checkpoint and transposed; seeded weights likewise")
    func storedTransposed() throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("conv.safetensors").path
        // The checkpoint's [in 3, out 2] matrix: row i holds input i's weights to both outputs.
        let checkpoint: [Float] = [1, 2, 3, 4, 5, 6]
        try writeSafetensors([("transformer.h.0.attn.c_attn.weight", "F32", [3, 2], littleEndian(checkpoint.map(\.bitPattern)))], to: path)
        let flipped = ModelProgram.Tensor(name: "c_attn_weight[0]", kind: "weight", dtype: "q8_0", shape: [2, 3], storedTransposed: true)
        let program = ModelProgram(model: "m", dimensions: [:], tensors: [flipped], ops: [])
        let file = try SafetensorsFile(path: path)
        #expect(try CheckpointWeights.load(program, from: file)["c_attn_weight[0]"] == [1, 3, 5, 2, 4, 6])
        #expect(flipped.toCheckpoint([1, 3, 5, 2, 4, 6]) == checkpoint)
        // The same file against the program's shape unflagged is refused, and the flag is named.
        var plain = program
        plain.tensors[0].storedTransposed = nil
        #expect(throws: RuntimeError.self) { try CheckpointWeights.load(plain, from: file) }
        var wrong = program
        wrong.tensors[0].shape = [3, 2]
        do {
            _ = try CheckpointWeights.load(wrong, from: file)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.message.contains("has shape [3, 2]; 'c_attn_weight[0]' in the program is [3, 2] (stored transposed: the checkpoint should hold [2, 3])"), "\(error.message)")
        }
        // Only 2-D weights can be stored transposed; program.json saying otherwise is refused.
        try program.validate()
        var activation = program
        activation.tensors[0].kind = "activation"
        #expect(throws: ArtifactError("program.json: tensors[0] 'c_attn_weight[0]' (activation [2, 3]) is storedTransposed; only 2-D weights are")) { try activation.validate() }
        var cube = program
        cube.tensors[0].shape = [2, 3, 1]
        #expect(throws: ArtifactError.self) { try cube.validate() }
        // Seeded weights are drawn in the checkpoint's layout: the flagged tensor holds the
        // transpose of the unflagged [in, out] one, so quantising does not change the model.
        let original = ModelProgram(model: "m", dimensions: [:], tensors: [.init(name: "w", kind: "weight", dtype: "f32", shape: [64, 32])], ops: [])
        let converted = ModelProgram(model: "m", dimensions: [:], tensors: [.init(name: "w", kind: "weight", dtype: "q4_0", shape: [32, 64], storedTransposed: true)], ops: [])
        let a = try #require(SeededWeights.make(original)["w"]), b = try #require(SeededWeights.make(converted)["w"])
        #expect(b == converted.tensors[0].fromCheckpoint(a) && a != b)
    }
}
