import ArgumentParser
import Foundation
import KVGraph
import KVPlanner

/// The options that bind a model's symbolic dimensions (`--context`, `--batch`, `--dim`).
struct ModelOptions: ParsableArguments {
    @Option(help: "Bind the symbolic dimension 'ctx' (KV cache capacity in tokens).")
    var context: Int?

    @Option(help: "Bind the symbolic dimension 'batch'.")
    var batch: Int?

    @Option(name: .customLong("dim"), help: ArgumentHelp("Bind any symbolic dimension (repeatable).", valueName: "name=value"))
    var dims: [String] = []

    func validate() throws {
        if let context, context < 1 { throw ValidationError("--context must be at least 1, got \(context)") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1, got \(batch)") }
        _ = try bindings()
    }

    /// The bound values and, per dimension, the flag that bound it (for messages).
    func bindings() throws -> (values: [String: Int], flags: [String: String]) {
        var values: [String: Int] = [:]
        var flags: [String: String] = [:]
        for d in dims {
            let parts = d.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let v = Int(parts[1]) else {
                throw ValidationError("--dim expects name=value with an integer value, got '\(d)'")
            }
            guard v >= 1 else { throw ValidationError("--dim \(parts[0]) must be at least 1, got \(v)") }
            if values[parts[0]] != nil { throw ValidationError("--dim \(parts[0]) given twice") }
            values[parts[0]] = v
            flags[parts[0]] = "--dim \(parts[0])"
        }
        for (name, value, flag) in [("ctx", context, "--context"), ("batch", batch, "--batch")] {
            guard let value else { continue }
            if values[name] != nil { throw ValidationError("\(flag) and --dim \(name) both bind '\(name)'") }
            values[name] = value
            flags[name] = flag
        }
        return (values, flags)
    }
}

/// A target by preset name (`cpu`, `edge-npu`, `datacenter-gpu`) or .hw path.
func loadTarget(_ nameOrPath: String) throws -> Target {
    if let text = TargetPresets.source(nameOrPath) {
        return try TargetParser.parse(SourceFile(path: "<preset \(nameOrPath)>", text: text))
    }
    guard nameOrPath.hasSuffix(".hw") else {
        throw UserError("--target: '\(nameOrPath)' is neither a preset (\(TargetPresets.names.joined(separator: ", "))) nor a .hw file")
    }
    return try TargetParser.parse(SourceFile(path: nameOrPath, text: try readText(nameOrPath)))
}
