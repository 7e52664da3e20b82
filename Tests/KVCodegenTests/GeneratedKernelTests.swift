import Foundation
import KVArtifact
import KVCodegen
import KVRuntime
import Testing

@Suite("Schedule lowering and emitted kernels")
struct GeneratedKernelTests {
    static func artifact(_ target: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Generated/tiny-llama/\(target)")
    }

    static func load<T: Decodable>(_ type: T.Type, _ target: String, _ name: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: artifact(target).appendingPathComponent(name)))
    }

    static func text(_ target: String, _ name: String) throws -> String {
        try String(contentsOf: artifact(target).appendingPathComponent(name), encoding: .utf8)
    }

    @Test("lowering the committed plans reproduces the committed schedule.json and sources byte for byte", arguments: ["cpu", "edge-npu"])
    func reproducible(target: String) throws {
        let program = try Self.load(ModelProgram.self, target, "program.json"), plan = try Self.load(Plan.self, target, "plan.json")
        let (schedule, kernels, step) = try SwiftEmitter.artifacts(program: program, plan: plan)
        #expect(schedule == (try Self.load(ExecutionSchedule.self, target, "schedule.json")))
        #expect(String(decoding: try schedule.encoded(), as: UTF8.self) == (try Self.text(target, "schedule.json")))
        #expect(kernels == (try Self.text(target, "Kernels.swift")))
        #expect(step == (try Self.text(target, "Schedule.swift")))
    }

    @Test("per slot: hops, loads, the kernel, then stores; kernels read and write tier 0 only; link totals are the plan's")
    func order() throws {
        let program = try Self.load(ModelProgram.self, "cpu", "program.json"), plan = try Self.load(Plan.self, "cpu", "plan.json")
        let schedule = try ScheduleLowering.lower(program: program, plan: plan)
        var lastSlot = -1, phase = 0  // 0 loads, 1 kernel, 2 stores
        for a in schedule.actions {
            if a.slot != lastSlot { (lastSlot, phase) = (a.slot, 0) }
            #expect(a.slot >= lastSlot)
            let p = a.kind == "kernel" ? 1 : (a.from!.tier == 0 ? 2 : 0)
            #expect(p >= phase, "slot \(a.slot): \(a.kind) after phase \(phase)")
            phase = p
            if a.kind == "kernel" { #expect((a.operands! + a.results!).allSatisfy { $0.tier == 0 }) }
        }
        #expect(schedule.actions.filter { $0.kind == "kernel" }.map { $0.op! } == Array(program.ops.indices))
        for (i, link) in schedule.links.enumerated() { #expect(schedule.linkBytes[i] == plan.estimate.linkBytes[link, default: 0], "\(link)") }
        #expect(schedule.arenas[0].bytes == plan.target.tiers[0].capacity)
    }

    @Test("edge-npu through swiftc + dlopen: 6 decode steps give the interpreter's logits (packed KV cache)")
    func compiledLibrary() throws {
        let program = try Self.load(ModelProgram.self, "edge-npu", "program.json"), plan = try Self.load(Plan.self, "edge-npu", "plan.json")
        let schedule = try Self.load(ExecutionSchedule.self, "edge-npu", "schedule.json")
        let weights = SeededWeights.make(program, seed: 3)
        let executor = try ScheduleExecutor(program: program, schedule: schedule, kernels: try Self.text("edge-npu", "Kernels.swift"),
                                            step: try Self.text("edge-npu", "Schedule.swift"), weights: weights, threads: 2)
        var reference = try ReferenceInterpreter(program: program, weights: weights, kvLayouts: plan.kv?.layers)
        let tokens = program.tensors.firstIndex { $0.name == "tokens" }!, pos = program.tensors.firstIndex { $0.name == "pos" }!
        let logits = program.tensors.firstIndex { $0.kind == "output" }!
        for (step, token) in [72, 101, 108, 108, 111, 33].enumerated() {
            try executor.setInput("tokens", [Float(token)])
            try executor.setInput("pos", [Float(step)])
            try executor.step()
            try reference.setInput(tokens, [Float(token)])
            try reference.setInput(pos, [Float(step)])
            try reference.step()
            let difference = zip(try executor.output("logits"), reference.values[logits]).map { abs($0 - $1) }.max()!
            #expect(difference <= 1e-3, "step \(step): max |Δlogit| \(difference)")
        }
        #expect(executor.kvTokensHeld == [6, 6, 6, 6])
    }

    @Test("ops without a generated kernel and tiled plans are refused by name")
    func refusals() throws {
        let p = ModelProgram(model: "t", dimensions: [:], tensors: [ModelProgram.Tensor(name: "x", kind: "input", dtype: "f32", shape: [2])],
                             ops: [ModelProgram.Op(name: "s", kind: "maxpool", operands: [0], results: [0], updates: [], attributes: [:])])
        let schedule = ExecutionSchedule(model: "t", target: "t", arenas: [], links: [], linkBytes: [], weights: [], inputs: [], outputs: [], kv: [], actions: [])
        #expect(throws: CodegenError("op 's' (maxpool) has no generated kernel yet; emitted: add, attention, concat, embed, gelu, layernorm, matmul, mul, relu, reshape, rmsnorm, rope, silu, silu_mul, softmax, split")) {
            try SwiftEmitter(program: p, schedule: schedule)
        }
        let half = ModelProgram(model: "t", dimensions: [:], tensors: [ModelProgram.Tensor(name: "x", kind: "input", dtype: "f32", shape: [2]),
                                                                        ModelProgram.Tensor(name: "y", kind: "output", dtype: "f16", shape: [2])],
                                ops: [ModelProgram.Op(name: "r", kind: "relu", operands: [0], results: [1], updates: [], attributes: [:])])
        #expect(throws: CodegenError("op 'r' produces f16 'y'; generated kernels compute in f32")) { try SwiftEmitter(program: half, schedule: schedule) }
        var plan = try Self.load(Plan.self, "cpu", "plan.json")
        plan.steps[2].tile = 0
        plan.steps[2].tiles = 2
        let program = try Self.load(ModelProgram.self, "cpu", "program.json")
        #expect(throws: CodegenError.self) { try ScheduleLowering.lower(program: program, plan: plan) }
    }
}
