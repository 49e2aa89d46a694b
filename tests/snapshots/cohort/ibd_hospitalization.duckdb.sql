WITH "cohort_655f522f_cs0_inpatient" AS (
  SELECT DISTINCT
    "t3"."concept_id"
  FROM "concept" AS "t3"
  WHERE
    "t3"."concept_id" IN (9201)
), "cohort_655f522f_cs1_ibd" AS (
  SELECT DISTINCT
    *
  FROM (
    SELECT
      *
    FROM (
      SELECT
        "t3"."concept_id"
      FROM "concept" AS "t3"
      WHERE
        "t3"."concept_id" IN (2000000015)
    ) AS "t8"
    UNION
    SELECT
      *
    FROM (
      SELECT
        "t12"."descendant_concept_id" AS "concept_id"
      FROM (
        SELECT
          *
        FROM "concept_ancestor" AS "t4"
        WHERE
          "t4"."ancestor_concept_id" IN (2000000015)
          AND "t4"."descendant_concept_id" IN (
            SELECT
              "t3"."concept_id"
            FROM "concept" AS "t3"
            WHERE
              "t3"."invalid_reason" IS NULL
          )
      ) AS "t12"
    ) AS "t15"
  ) AS "t16"
), "cohort_655f522f_entry_events" AS (
  SELECT
    "t27"."person_id",
    "t27"."event_id",
    "t27"."start_date",
    "t27"."end_date",
    "t27"."op_start",
    "t27"."op_end",
    "t27"."visit_occurrence_id"
  FROM (
    SELECT
      "t23"."person_id",
      "t23"."record_id",
      "t23"."start_date",
      "t23"."end_date",
      "t23"."concept_id",
      "t23"."visit_occurrence_id",
      "t23"."criterion",
      "t23"."op_person_id",
      "t23"."op_start",
      "t23"."op_end",
      "t23"."_use",
      (
        ROW_NUMBER() OVER (
          PARTITION BY "t23"."person_id"
          ORDER BY "t23"."start_date" ASC, "t23"."record_id" ASC, "t23"."criterion" ASC
          ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) - 1
      ) + 1 AS "event_id"
    FROM (
      SELECT
        "t20"."person_id",
        "t20"."record_id",
        "t20"."start_date",
        "t20"."end_date",
        "t20"."concept_id",
        "t20"."visit_occurrence_id",
        "t20"."criterion",
        "t6"."op_person_id",
        "t6"."op_start",
        "t6"."op_end",
        "t6"."_use"
      FROM (
        SELECT
          "t17"."person_id",
          "t17"."record_id",
          "t17"."start_date",
          "t17"."end_date",
          "t17"."concept_id",
          "t17"."visit_occurrence_id",
          0 AS "criterion"
        FROM (
          SELECT
            *
          FROM (
            SELECT
              "t2"."person_id",
              "t2"."visit_occurrence_id" AS "record_id",
              "t2"."visit_start_date" AS "start_date",
              COALESCE("t2"."visit_end_date", "t2"."visit_start_date") AS "end_date",
              "t2"."visit_concept_id" AS "concept_id",
              "t2"."visit_source_concept_id" AS "source_concept_id",
              "t2"."visit_occurrence_id",
              1 AS "_use"
            FROM "visit_occurrence" AS "t2"
          ) AS "t7"
          WHERE
            "t7"."concept_id" IN (
              SELECT
                *
              FROM "cohort_655f522f_cs0_inpatient" AS "t11"
            )
        ) AS "t17"
      ) AS "t20"
      INNER JOIN (
        SELECT
          "t1"."person_id" AS "op_person_id",
          "t1"."observation_period_start_date" AS "op_start",
          "t1"."observation_period_end_date" AS "op_end",
          2 AS "_use"
        FROM "observation_period" AS "t1"
      ) AS "t6"
        ON "t20"."person_id" = "t6"."op_person_id"
        AND "t20"."start_date" >= "t6"."op_start"
        AND "t20"."start_date" <= "t6"."op_end"
    ) AS "t23"
  ) AS "t27"
), "cohort_655f522f_rule_1" AS (
  SELECT
    "t30"."person_id",
    "t30"."event_id",
    "t30"."start_date",
    "t30"."end_date",
    "t30"."op_start",
    "t30"."op_end",
    "t30"."visit_occurrence_id"
  FROM "cohort_655f522f_entry_events" AS "t30"
  SEMI JOIN (
    SELECT
      "t24"."person_id" AS "a_person_id",
      "t24"."record_id" AS "a_record_id",
      "t24"."start_date" AS "a_start_date",
      "t24"."end_date" AS "a_end_date",
      "t24"."concept_id" AS "a_concept_id",
      "t24"."visit_occurrence_id" AS "a_visit_occurrence_id"
    FROM (
      SELECT
        *
      FROM (
        SELECT
          "t0"."person_id",
          "t0"."condition_occurrence_id" AS "record_id",
          "t0"."condition_start_date" AS "start_date",
          COALESCE(
            "t0"."condition_end_date",
            CAST(CAST("t0"."condition_start_date" + INTERVAL '1' DAY AS TIMESTAMP) AS DATE)
          ) AS "end_date",
          "t0"."condition_concept_id" AS "concept_id",
          "t0"."condition_source_concept_id" AS "source_concept_id",
          "t0"."visit_occurrence_id",
          3 AS "_use"
        FROM "condition_occurrence" AS "t0"
      ) AS "t13"
      WHERE
        "t13"."concept_id" IN (
          SELECT
            *
          FROM "cohort_655f522f_cs1_ibd" AS "t21"
        )
    ) AS "t24"
  ) AS "t26"
    ON "t30"."person_id" = "t26"."a_person_id"
    AND "t26"."a_start_date" >= "t30"."op_start"
    AND "t26"."a_start_date" <= "t30"."op_end"
    AND "t26"."a_visit_occurrence_id" = "t30"."visit_occurrence_id"
)
SELECT
  "t37"."person_id" AS "subject_id",
  "t37"."start_date" AS "cohort_start_date",
  CAST(CAST("t37"."padded_end" + INTERVAL '-7' DAY AS TIMESTAMP) AS DATE) AS "cohort_end_date"
FROM (
  SELECT
    "t36"."person_id",
    "t36"."era",
    MIN("t36"."start_date") AS "start_date",
    MAX("t36"."padded") AS "padded_end"
  FROM (
    SELECT
      "t35"."person_id",
      "t35"."start_date",
      "t35"."padded",
      "t35"."is_start",
      SUM("t35"."is_start") OVER (
        PARTITION BY "t35"."person_id"
        ORDER BY "t35"."start_date" ASC, "t35"."is_start" DESC, "t35"."padded" ASC
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS "era"
    FROM (
      SELECT
        "t34"."person_id",
        "t34"."start_date",
        "t34"."padded",
        CASE
          WHEN MAX("t34"."padded") OVER (
            PARTITION BY "t34"."person_id"
            ORDER BY "t34"."start_date" ASC, "t34"."padded" ASC
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 preceding
          ) >= "t34"."start_date"
          THEN 0
          ELSE 1
        END AS "is_start"
      FROM (
        SELECT
          "t33"."person_id",
          "t33"."start_date",
          CAST(CAST("t33"."cohort_end" + INTERVAL '7' DAY AS TIMESTAMP) AS DATE) AS "padded"
        FROM (
          SELECT
            "t32"."person_id",
            "t32"."event_id",
            "t32"."start_date",
            "t32"."end_date",
            "t32"."op_start",
            "t32"."op_end",
            "t32"."visit_occurrence_id",
            CASE
              WHEN CASE
                WHEN "t32"."end_date" > "t32"."op_end"
                THEN "t32"."op_end"
                ELSE "t32"."end_date"
              END >= "t32"."start_date"
              THEN CASE
                WHEN "t32"."end_date" > "t32"."op_end"
                THEN "t32"."op_end"
                ELSE "t32"."end_date"
              END
              ELSE CAST(NULL AS DATE)
            END AS "cohort_end"
          FROM "cohort_655f522f_rule_1" AS "t32"
        ) AS "t33"
        WHERE
          "t33"."cohort_end" IS NOT NULL
      ) AS "t34"
    ) AS "t35"
  ) AS "t36"
  GROUP BY
    1,
    2
) AS "t37"
