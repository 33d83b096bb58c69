package redisstore

// AuditKeysForTest returns a chain's record and checkpoint keys.
func AuditKeysForTest(prefix, chain string) (records, checkpoints string) {
	return auditKeyRecords(prefix, chain), auditKeyCheckpoints(prefix, chain)
}
