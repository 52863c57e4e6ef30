/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  Small helpers shared by the files that run SQL through SPI.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_SPI_UTIL_H
#define PAGERDUTY_SPI_UTIL_H

#include "executor/spi.h"
#include "nodes/parsenodes.h"

/*
 * Prepare a statement once per process and keep it.  The plan cache
 * re-plans it when the tables it reads change (DROP/CREATE EXTENSION, say).
 *
 * pd_prepare_replanned() keeps the parsed statement but plans it again at
 * each execution, for the worker's statements on the outbox: the outbox
 * goes from empty to a large backlog in one commit, long before autovacuum
 * analyzes it, and a plan cached while it was empty (full index scans in
 * nested loops) would make each claim cost as much as the whole backlog.
 * A fresh plan sees the table's current size.
 */
static inline SPIPlanPtr
pd_prepare_opts(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes,
				int cursor_options)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*slot = plan;
	}
	return *slot;
}

static inline SPIPlanPtr
pd_prepare(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	return pd_prepare_opts(slot, sql, nargs, argtypes, 0);
}

static inline SPIPlanPtr
pd_prepare_replanned(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	return pd_prepare_opts(slot, sql, nargs, argtypes, CURSOR_OPT_CUSTOM_PLAN);
}

static inline int
pd_execute(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
		   long count, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, count);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * A text column of a row of the last result, copied to the memory context
 * that was current at SPI_connect() so that it outlives SPI_finish(); NULL
 * for SQL null.
 */
static inline char *
pd_spi_text(uint64 row, int col)
{
	char	   *s = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
	char	   *copy;

	if (s == NULL)
		return NULL;
	copy = SPI_palloc(strlen(s) + 1);
	strcpy(copy, s);
	return copy;
}

#endif							/* PAGERDUTY_SPI_UTIL_H */
