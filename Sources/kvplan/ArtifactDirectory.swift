import Foundation
import KVArtifact

/// Reads the files of an artifact directory written by `kvplan compile`, with errors naming the path.
struct ArtifactDirectory {
    let path: String

    /// The decoded file, or nil when it does not exist.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, _ name: String) throws -> T? {
        guard let data = FileManager.default.contents(atPath: "\(path)/\(name)") else { return nil }
        do { return try JSONDecoder().decode(T.self, from: data) } catch { throw UserError("\(path)/\(name): not valid (\(error))") }
    }

    /// The decoded file; a missing file is an error.
    func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        guard let value = try decodeIfPresent(type, name) else { throw UserError("cannot read '\(path)/\(name)'") }
        return value
    }

    /// DIR/plan.json, decoded; errors say whether the directory or the file is missing, or why it is not a plan.
    func plan() throws -> Plan {
        let file = "\(path)/plan.json"
        guard let data = FileManager.default.contents(atPath: file) else {
            throw UserError(FileManager.default.fileExists(atPath: path) ? "cannot read '\(file)' (is '\(path)' an artifact directory from kvplan compile?)"
                                                                         : "no such directory '\(path)'")
        }
        do { return try Plan.decode(data) } catch let error as PlanFormatError {
            throw UserError("\(file): \(error)")
        } catch {
            throw UserError("\(file): not a valid plan: \(error)")
        }
    }

    /// A text file (generated sources).
    func text(_ name: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: "\(path)/\(name)") else { throw UserError("cannot read '\(path)/\(name)'") }
        return String(decoding: data, as: UTF8.self)
    }
}
