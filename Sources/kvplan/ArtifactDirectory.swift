import Foundation

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

    /// A text file (generated sources).
    func text(_ name: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: "\(path)/\(name)") else { throw UserError("cannot read '\(path)/\(name)'") }
        return String(decoding: data, as: UTF8.self)
    }
}
