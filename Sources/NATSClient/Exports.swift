// Protocol types that appear in the client's public API.

@_exported import struct NATSProtocol.Headers
@_exported import struct NATSProtocol.HeaderField
@_exported import enum NATSProtocol.HeadersError
