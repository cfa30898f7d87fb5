// Anchor for the generated schema code (the library is the .proto files).
