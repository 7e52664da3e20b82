import Foundation

/// The one JSON form of every artifact file: pretty-printed, keys sorted, slashes unescaped — so
/// identical input gives byte-identical files.
public enum ArtifactJSON {
    /// `value` encoded deterministically.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }
}
