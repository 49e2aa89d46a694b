WITH "cohort_837a4e7d_cs0_relapse" AS (
  SELECT DISTINCT
    "t2"."concept_id"
  FROM "concept" AS "t2"
  WHERE
    "t2"."concept_id" IN (2000000201)
), "cohort_837a4e7d_entry_events" AS (
  SELECT
    "t13"."person_id",
    "t13"."event_id",
    "t13"."start_date",
    "t13"."end_date",
    "t13"."op_start",
    "t13"."op_end",
    "t13"."visit_occurrence_id"
  FROM (
    SELECT
      "t12"."person_id",
      "t12"."record_id",
      "t12"."start_date",
      "t12"."end_date",
      "t12"."concept_id",
      "t12"."visit_occurrence_id",
      "t12"."criterion",
      "t12"."op_person_id",
      "t12"."op_start",
      "t12"."op_end",
      "t12"."_use",
      (
        ROW_NUMBER() OVER (
          PARTITION BY "t12"."person_id"
          ORDER BY "t12"."start_date" ASC, "t12"."record_id" ASC, "t12"."criterion" ASC
          ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) - 1
      ) + 1 AS "event_id"
    FROM (
      SELECT
        "t11"."person_id",
        "t11"."record_id",
        "t11"."start_date",
        "t11"."end_date",
        "t11"."concept_id",
        "t11"."visit_occurrence_id",
        "t11"."criterion",
        "t4"."op_person_id",
        "t4"."op_start",
        "t4"."op_end",
        "t4"."_use"
      FROM (
        SELECT
          "t9"."person_id",
          "t9"."record_id",
          "t9"."start_date",
          "t9"."end_date",
          "t9"."concept_id",
          "t9"."visit_occurrence_id",
          0 AS "criterion"
        FROM (
          SELECT
            *
          FROM (
            SELECT
              "t1"."person_id",
              "t1"."observation_id" AS "record_id",
              "t1"."observation_date" AS "start_date",
              CAST(CAST("t1"."observation_date" + INTERVAL '1' DAY AS TIMESTAMP) AS DATE) AS "end_date",
              "t1"."observation_concept_id" AS "concept_id",
              "t1"."observation_source_concept_id" AS "source_concept_id",
              "t1"."visit_occurrence_id",
              1 AS "_use"
            FROM "observation" AS "t1"
          ) AS "t6"
          WHERE
            "t6"."concept_id" IN (
              SELECT
                *
              FROM "cohort_837a4e7d_cs0_relapse" AS "t7"
            )
        ) AS "t9"
      ) AS "t11"
      INNER JOIN (
        SELECT
          "t0"."person_id" AS "op_person_id",
          "t0"."observation_period_start_date" AS "op_start",
          "t0"."observation_period_end_date" AS "op_end",
          2 AS "_use"
        FROM "observation_period" AS "t0"
      ) AS "t4"
        ON "t11"."person_id" = "t4"."op_person_id"
        AND "t11"."start_date" >= "t4"."op_start"
        AND "t11"."start_date" <= "t4"."op_end"
    ) AS "t12"
  ) AS "t13"
)
SELECT
  "t20"."person_id" AS "subject_id",
  "t20"."start_date" AS "cohort_start_date",
  "t20"."padded_end" AS "cohort_end_date"
FROM (
  SELECT
    "t19"."person_id",
    "t19"."era",
    MIN("t19"."start_date") AS "start_date",
    MAX("t19"."padded") AS "padded_end"
  FROM (
    SELECT
      "t18"."person_id",
      "t18"."start_date",
      "t18"."padded",
      "t18"."is_start",
      SUM("t18"."is_start") OVER (
        PARTITION BY "t18"."person_id"
        ORDER BY "t18"."start_date" ASC, "t18"."is_start" DESC, "t18"."padded" ASC
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS "era"
    FROM (
      SELECT
        "t17"."person_id",
        "t17"."start_date",
        "t17"."padded",
        CASE
          WHEN MAX("t17"."padded") OVER (
            PARTITION BY "t17"."person_id"
            ORDER BY "t17"."start_date" ASC, "t17"."padded" ASC
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 preceding
          ) >= "t17"."start_date"
          THEN 0
          ELSE 1
        END AS "is_start"
      FROM (
        SELECT
          "t16"."person_id",
          "t16"."start_date",
          "t16"."cohort_end" AS "padded"
        FROM (
          SELECT
            "t15"."person_id",
            "t15"."event_id",
            "t15"."start_date",
            "t15"."end_date",
            "t15"."op_start",
            "t15"."op_end",
            "t15"."visit_occurrence_id",
            CASE
              WHEN CASE
                WHEN CAST(CAST("t15"."start_date" + INTERVAL '30' DAY AS TIMESTAMP) AS DATE) > "t15"."op_end"
                THEN "t15"."op_end"
                ELSE CAST(CAST("t15"."start_date" + INTERVAL '30' DAY AS TIMESTAMP) AS DATE)
              END >= "t15"."start_date"
              THEN CASE
                WHEN CAST(CAST("t15"."start_date" + INTERVAL '30' DAY AS TIMESTAMP) AS DATE) > "t15"."op_end"
                THEN "t15"."op_end"
                ELSE CAST(CAST("t15"."start_date" + INTERVAL '30' DAY AS TIMESTAMP) AS DATE)
              END
              ELSE CAST(NULL AS DATE)
            END AS "cohort_end"
          FROM "cohort_837a4e7d_entry_events" AS "t15"
        ) AS "t16"
        WHERE
          "t16"."cohort_end" IS NOT NULL
      ) AS "t17"
    ) AS "t18"
  ) AS "t19"
  GROUP BY
    1,
    2
) AS "t20"
