import ArgumentParser
import Foundation
import KVGraph
import KVPlanner

/// What a path given to `kvplan check` holds.
enum InputFile {
    case graph(LoweredGraph, SourceFile)
    case target(Target)
}

/// Prints to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

/// Reports a problem that has no source position and exits with status 1.
struct UserError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Reads a UTF-8 text file, with a clear error when it cannot.
func readText(_ path: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw UserError("cannot read '\(path)': no such file")
    }
    guard !isDirectory.boolValue else { throw UserError("cannot read '\(path)': it is a directory") }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw UserError("cannot read '\(path)': permission denied or unreadable")
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw UserError("cannot read '\(path)': not UTF-8 text")
    }
    return text
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a rename.
func writeAtomically(_ text: String, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent()
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw UserError("cannot write '\(path)': directory '\(directory.path)' does not exist")
    }
    let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    do {
        try Data(text.utf8).write(to: temporary)
        // POSIX rename replaces the destination atomically on one file system
        // (Foundation's replaceItemAt fails intermittently on Linux).
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw UserError("cannot write '\(path)': \(reason)")
        }
    } catch let error as UserError {
        throw error
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw UserError("cannot write '\(path)': \(error.localizedDescription)")
    }
}

/// Runs a command's body, turning bad input (diagnostics, UserError) into a message on stderr and
/// exit code 1; any other error propagates (ArgumentParser reports it).
func reportingBadInput(_ body: () throws -> Void) throws {
    do { try body() } catch let error as DiagnosticError {
        printError(error.description)
        throw ExitCode(1)
    } catch let error as UserError {
        printError("error: \(error.message)\n")
        throw ExitCode(1)
    }
}

/// Loads a .graph, a config.json (imported on the fly) or a .hw target.
func loadInput(_ path: String, dimensions: [String: Int], flagNames: [String: String]) throws -> InputFile {
    let text = try readText(path)
    if path.hasSuffix(".hw") {
        return .target(try TargetParser.parse(SourceFile(path: path, text: text)))
    }
    var source = SourceFile(path: path, text: text)
    var name: String?
    if path.hasSuffix(".json") {
        let graphText: String
        do { graphText = try HFImporter.importConfig(text, path: path) } catch {
            throw DiagnosticError(file: source, diagnostics: [.error(error.location, error.message)])
        }
        let base = (path as NSString).lastPathComponent
        name = base == "config.json" ? (((path as NSString).deletingLastPathComponent as NSString).lastPathComponent) : String(base.dropLast(5))
        if name?.isEmpty ?? true { name = "model" }
        source = SourceFile(path: "\(path) (imported)", text: graphText)
    }
    let declared = GraphCompiler.declaredDimensions(source)
    for key in dimensions.keys.sorted() where !declared.contains(key) {
        let flag = flagNames[key] ?? "--dim \(key)=..."
        let available = declared.isEmpty ? "it declares none" : "it declares: \(declared.joined(separator: ", "))"
        throw UserError("\(flag): '\(path)' has no symbolic dimension '\(key)' (\(available))")
    }
    return .graph(try GraphCompiler.compile(source, name: name, dimensions: dimensions), source)
}
