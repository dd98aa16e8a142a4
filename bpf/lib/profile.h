/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Profiling builds only (`make profile-variants`, docs/benchmarks.md "Where established TCP
 * and NAT spend their time"): -DTNA_PROFILE_OFF=<bits> takes steps of the stateful path out,
 * so that a variant measured beside the production object says what each step costs. Such an
 * object is not exact and tna never loads it by itself; the production build has
 * TNA_PROFILE_OFF 0 and every test below compiles away.
 */
#ifndef TNA_LIB_PROFILE_H
#define TNA_LIB_PROFILE_H

#ifndef TNA_PROFILE_OFF
#define TNA_PROFILE_OFF 0
#endif

#define TNA_PROF_CSUM (1 << 0)		/* conntrack's L4 checksum verification */
#define TNA_PROF_REFRESH (1 << 1)	/* the timeout refresh (bpf_ct_change_timeout) */
#define TNA_PROF_WINDOW (1 << 2)	/* TCP state, flags and tracked-window checks */
#define TNA_PROF_CLASSIFY (1 << 3)	/* the forward hook's classifier */
#define TNA_PROF_LOOKUP (1 << 4)	/* ct lookup and release: every packet "established" */
#define TNA_PROF_NAT (1 << 5)		/* the NAT rewrite (the entry's NAT is ignored) */
#define TNA_PROF_SHORTCUTS (1 << 6)	/* the rule-0 and refresh shortcuts (tna_fw_table.rule0_all,
					 * ct_hz): the code as it was before them */
#define TNA_PROF_LAST (1 << 7)		/* the retransmission counter (tna_ct_last) */

#define tna_profile_off(step) (TNA_PROFILE_OFF & (step))

#endif
