package snapshot

// SetVerifyByPassMin sets verifyByPassMin and returns what restores it.
func SetVerifyByPassMin(n int) (restore func()) {
	old := verifyByPassMin
	verifyByPassMin = n
	return func() { verifyByPassMin = old }
}
