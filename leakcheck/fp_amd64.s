#include "textflag.h"

// func getfp() unsafe.Pointer
// Returns the frame pointer (BP) of the calling function.
TEXT ·getfp(SB),NOSPLIT|NOFRAME,$0-8
	MOVQ BP, ret+0(FP)
	RET
