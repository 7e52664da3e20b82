import Foundation
import KVArtifact

/// Text generation with a byte-level decoder: prompt bytes in, sampled bytes out.
///
/// The program's token-id input is the i32 input an `embed` reads; its position input is the
/// i32 input a `rope` reads (if any). The prompt is fed one token per decode step (the cache
/// fills as it would in serving), then `maxTokens` bytes are sampled: greedy at temperature 0,
/// else from softmax(logits / T) with a seeded generator.
public struct Generator {
    /// What runs the steps: the reference interpreter, or else a compiled schedule.
    public private(set) var interpreter: ReferenceInterpreter?
    public let executor: ScheduleExecutor?
    let program: ModelProgram
    /// Called with (token, position) before each step (e.g. to run a reference alongside).
    public var beforeStep: ((Int, Int) throws(RuntimeError) -> Void)?
    /// Called with each op index after its generated kernel ran (compiled schedules only).
    public var observe: ((Int) -> Void)?
    let tokenInput: Int
    let positionInput: Int?
    let logits: Int
    let vocabulary: Int

    /// A generator over an interpreter whose program is a byte-level decoder with batch 1.
    public init(_ interpreter: ReferenceInterpreter) throws(RuntimeError) {
        try self.init(interpreter: interpreter, executor: nil, program: interpreter.program)
    }

    /// A generator over a compiled schedule of a byte-level decoder with batch 1.
    public init(_ executor: ScheduleExecutor) throws(RuntimeError) {
        try self.init(interpreter: nil, executor: executor, program: executor.program)
    }

    init(interpreter: ReferenceInterpreter?, executor: ScheduleExecutor?, program p: ModelProgram) throws(RuntimeError) {
        self.interpreter = interpreter
        self.executor = executor
        self.program = p
        guard let embed = p.ops.first(where: { $0.kind == "embed" }), embed.operands.count == 2,
              p.tensors[embed.operands[1]].kind == "input" else {
            throw RuntimeError("'\(p.model)' has no embed op reading an input of token ids, so it cannot generate text")
        }
        tokenInput = embed.operands[1]
        guard p.tensors[tokenInput].elementCount == 1 else {
            throw RuntimeError("generation runs one sequence; '\(p.tensors[tokenInput].name)' holds \(p.tensors[tokenInput].elementCount) tokens (compile with --batch 1)")
        }
        positionInput = p.ops.first { $0.kind == "rope" && $0.operands.count == 2 && p.tensors[$0.operands[1]].kind == "input" }?.operands[1]
        guard let out = p.tensors.indices.last(where: { p.tensors[$0].kind == "output" }) else {
            throw RuntimeError("'\(p.model)' has no output tensor")
        }
        logits = out
        vocabulary = p.tensors[out].shape.last ?? 0
        guard vocabulary == 256 else {
            throw RuntimeError("the byte tokenizer needs a vocabulary of 256; '\(p.tensors[out].name)' has \(vocabulary)")
        }
    }

    /// Runs one token at `position`; returns the logits.
    public mutating func feed(_ token: Int, position: Int) throws(RuntimeError) -> [Float] {
        try beforeStep?(token, position)
        if let executor {
            try executor.setInput(program.tensors[tokenInput].name, [Float(token)])
            if let positionInput { try executor.setInput(program.tensors[positionInput].name, [Float(position)]) }
            try executor.step(observe: observe)
            return try executor.output(program.tensors[logits].name)
        }
        try interpreter!.setInput(tokenInput, [Float(token)])
        if let positionInput { try interpreter!.setInput(positionInput, [Float(position)]) }
        try interpreter!.step()
        return interpreter!.values[logits]
    }

    /// The prompt's bytes followed by `maxTokens` sampled bytes (calls `emit` with each new byte).
    public mutating func generate(prompt: [UInt8], maxTokens: Int, temperature: Double, seed: UInt64,
                                  emit: (UInt8) -> Void = { _ in }) throws(RuntimeError) -> [UInt8] {
        var rng = seed ^ 0x5DEE_CE66_D1CE_4E5B
        var position = 0
        var last: [Float] = []
        for byte in prompt.isEmpty ? [10] : prompt {
            last = try feed(Int(byte), position: position)
            position += 1
        }
        var out: [UInt8] = []
        for _ in 0..<maxTokens {
            let next = Self.sample(last, temperature: temperature, state: &rng)
            out.append(UInt8(next))
            emit(UInt8(next))
            last = try feed(next, position: position)
            position += 1
        }
        return out
    }

    /// Greedy (temperature 0) or softmax sampling with a SplitMix64 state.
    public static func sample(_ logits: [Float], temperature: Double, state: inout UInt64) -> Int {
        guard temperature > 0 else { return logits.indices.max { logits[$0] < logits[$1] } ?? 0 }
        let m = logits.max() ?? 0
        let weights = logits.map { exp(Double($0 - m) / temperature) }
        var u = Double(splitMix64(&state) >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (i, w) in weights.enumerated() {
            u -= w
            if u < 0 { return i }
        }
        return weights.count - 1
    }
}
