import Formats

/// The bodies of the stream API's requests, decoded as 2.9.10's Go structs are: keys match without
/// regard to ASCII case, unknown keys and `null` values are ignored, a wrong type, a fraction or a
/// negative number for an unsigned field is 10025 (invalid JSON).
enum APIRequest {
    /// 2.9.10's isEmptyRequest: no bytes, `{}`, or a JSON object without members.
    static func isEmpty(_ body: [UInt8]) -> Bool {
        if body.isEmpty { return true }
        guard let document = try? JSON.parse(body), let members = document.members else { return false }
        return members.isEmpty
    }

    /// The members of an object body; `null` is an object without members.
    /// - Throws: ``JetStreamAPIError/invalidJSON``.
    static func members(_ body: [UInt8]) throws(JetStreamAPIError) -> [JSONMember] {
        let document: JSON
        do { document = try JSON.parse(body) } catch { throw .invalidJSON }
        if case .null = document { return [] }
        guard let members = document.members else { throw .invalidJSON }
        return members
    }

    /// An unsigned integer field (uint64 in Go).
    static func unsigned(_ value: JSON) throws(JetStreamAPIError) -> UInt64 {
        guard case .int(let i) = value, i >= 0 else { throw .invalidJSON }
        return UInt64(i)
    }

    /// A signed field (int in Go).
    static func signed(_ value: JSON) throws(JetStreamAPIError) -> Int {
        guard case .int(let i) = value else { throw .invalidJSON }
        return Int(i)
    }

    static func string(_ value: JSON) throws(JetStreamAPIError) -> String {
        guard let s = value.stringValue else { throw .invalidJSON }
        return s
    }

    static func bool(_ value: JSON) throws(JetStreamAPIError) -> Bool {
        guard let b = value.boolValue else { throw .invalidJSON }
        return b
    }

    /// Calls `field` with each non-null member's folded key and value.
    static func each(_ body: [UInt8], _ field: (String, JSON) throws(JetStreamAPIError) -> Void) throws(JetStreamAPIError) {
        for member in try members(body) {
            if case .null = member.value { continue }
            try field(JetStreamJSON.folded(member.key), member.value)
        }
    }
}

/// `STREAM.INFO` options.
struct StreamInfoRequest {
    var deletedDetails = false
    var subjectsFilter = ""
    var offset = 0

    /// - Throws: ``JetStreamAPIError/invalidJSON``.
    init(_ body: [UInt8]) throws(JetStreamAPIError) {
        guard !APIRequest.isEmpty(body) else { return }
        try APIRequest.each(body) { (key, value) throws(JetStreamAPIError) in
            switch key {
            case "deleted_details": deletedDetails = try APIRequest.bool(value)
            case "subjects_filter": subjectsFilter = try APIRequest.string(value)
            case "offset": offset = try APIRequest.signed(value)
            default: break
            }
        }
    }
}

/// `STREAM.NAMES` and `STREAM.LIST` options.
struct StreamListRequest {
    var offset = 0
    var subject = ""

    /// - Throws: ``JetStreamAPIError/invalidJSON``.
    init(_ body: [UInt8]) throws(JetStreamAPIError) {
        guard !APIRequest.isEmpty(body) else { return }
        try APIRequest.each(body) { (key, value) throws(JetStreamAPIError) in
            switch key {
            case "offset": offset = try APIRequest.signed(value)
            case "subject": subject = try APIRequest.string(value)
            default: break
            }
        }
    }
}

/// `STREAM.PURGE` options.
struct PurgeRequest {
    var sequence: UInt64 = 0
    var filter = ""
    var keep: UInt64 = 0

    /// - Throws: ``JetStreamAPIError/invalidJSON``.
    init(_ body: [UInt8]) throws(JetStreamAPIError) {
        guard !APIRequest.isEmpty(body) else { return }
        try APIRequest.each(body) { (key, value) throws(JetStreamAPIError) in
            switch key {
            case "seq": sequence = try APIRequest.unsigned(value)
            case "filter": filter = try APIRequest.string(value)
            case "keep": keep = try APIRequest.unsigned(value)
            default: break
            }
        }
    }
}

/// `STREAM.MSG.GET` and `DIRECT.GET` requests.
struct MessageGetRequest {
    var sequence: UInt64 = 0
    var lastBySubject = ""
    var nextBySubject = ""

    init() {}

    /// - Throws: ``JetStreamAPIError/invalidJSON``.
    init(_ body: [UInt8]) throws(JetStreamAPIError) {
        try APIRequest.each(body) { (key, value) throws(JetStreamAPIError) in
            switch key {
            case "seq": sequence = try APIRequest.unsigned(value)
            case "last_by_subj": lastBySubject = try APIRequest.string(value)
            case "next_by_subj": nextBySubject = try APIRequest.string(value)
            default: break
            }
        }
    }

    /// 2.9.10's rule: exactly one of seq and last_by_subj, or next_by_subj (with an optional seq).
    var isValid: Bool {
        if sequence > 0 && !lastBySubject.isEmpty { return false }
        if sequence == 0 && lastBySubject.isEmpty && nextBySubject.isEmpty { return false }
        return lastBySubject.isEmpty || nextBySubject.isEmpty
    }

    /// The message asked for.
    /// - Throws: the store's error (not found, I/O).
    func load(from store: StreamStore) throws(StreamStoreError) -> StoredMessage {
        if sequence > 0 && nextBySubject.isEmpty { return try store.load(sequence) }
        if !nextBySubject.isEmpty { return try store.next(bySubject: nextBySubject, from: sequence) }
        return try store.last(bySubject: lastBySubject)
    }
}

/// `STREAM.MSG.DELETE`.
struct MessageDeleteRequest {
    var sequence: UInt64 = 0
    var noErase = false

    /// - Throws: ``JetStreamAPIError/invalidJSON``.
    init(_ body: [UInt8]) throws(JetStreamAPIError) {
        try APIRequest.each(body) { (key, value) throws(JetStreamAPIError) in
            switch key {
            case "seq": sequence = try APIRequest.unsigned(value)
            case "no_erase": noErase = try APIRequest.bool(value)
            default: break
            }
        }
    }
}
