package audit

// Refusal is refusal, for the tests of which ClickHouse errors are the rows'.
var Refusal = refusal
