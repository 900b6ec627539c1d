"""The cosim wire protocol (see PROTOCOL.md in this folder, which is authoritative).

Pure: bytes <-> messages, no sockets. Every service uses this one implementation.
"""
from cosim.proto.messages import PROTOCOL_VERSION, SIGNATURE, Message, MessageType  # noqa: F401
from cosim.proto.codec import decode, encode, ProtocolError, MalformedMessage, VersionMismatch, MessageTooLarge  # noqa: F401
