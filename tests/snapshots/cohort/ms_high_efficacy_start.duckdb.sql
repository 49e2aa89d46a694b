WITH "cohort_f7cb8ce4_cs0_ms" AS (
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
        "t3"."concept_id" IN (374919)
    ) AS "t10"
    UNION
    SELECT
      *
    FROM (
      SELECT
        "t14"."descendant_concept_id" AS "concept_id"
      FROM (
        SELECT
          *
        FROM "concept_ancestor" AS "t4"
        WHERE
          "t4"."ancestor_concept_id" IN (374919)
          AND "t4"."descendant_concept_id" IN (
            SELECT
              "t3"."concept_id"
            FROM "concept" AS "t3"
            WHERE
              "t3"."invalid_reason" IS NULL
          )
      ) AS "t14"
    ) AS "t17"
  ) AS "t20"
), "cohort_f7cb8ce4_cs1_high_efficacy_dmt" AS (
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
        "t3"."concept_id" IN (2000000303)
    ) AS "t11"
    UNION
    SELECT
      *
    FROM (
      SELECT
        "t15"."descendant_concept_id" AS "concept_id"
      FROM (
        SELECT
          *
        FROM "concept_ancestor" AS "t4"
        WHERE
          "t4"."ancestor_concept_id" IN (2000000303)
          AND "t4"."descendant_concept_id" IN (
            SELECT
              "t3"."concept_id"
            FROM "concept" AS "t3"
            WHERE
              "t3"."invalid_reason" IS NULL
          )
      ) AS "t15"
    ) AS "t18"
  ) AS "t21"
), "t27" AS (
  SELECT
    *
  FROM "cohort_f7cb8ce4_cs1_high_efficacy_dmt" AS "t25"
), "cohort_f7cb8ce4_entry_events" AS (
  SELECT
    "t36"."person_id",
    1 AS "event_id",
    "t36"."start_date",
    "t36"."end_date",
    "t36"."op_start",
    "t36"."op_end",
    "t36"."visit_occurrence_id"
  FROM (
    SELECT
      "t35"."person_id",
      "t35"."record_id",
      "t35"."start_date",
      "t35"."end_date",
      "t35"."concept_id",
      "t35"."visit_occurrence_id",
      "t35"."criterion",
      "t13"."op_person_id",
      "t13"."op_start",
      "t13"."op_end",
      "t13"."_use"
    FROM (
      SELECT
        "t33"."person_id",
        "t33"."record_id",
        "t33"."start_date",
        "t33"."end_date",
        "t33"."concept_id",
        "t33"."visit_occurrence_id",
        0 AS "criterion"
      FROM (
        SELECT
          "t30"."person_id",
          MIN("t30"."start_date") AS "start_date",
          NULLIF(
            FIRST(
              COALESCE("t30"."record_id", -9223372036854775807) ORDER BY "t30"."start_date" ASC, "t30"."record_id" ASC
            ) FILTER(WHERE
              COALESCE("t30"."record_id", -9223372036854775807) IS NOT NULL),
            -9223372036854775807
          ) AS "record_id",
          FIRST("t30"."end_date" ORDER BY "t30"."start_date" ASC, "t30"."record_id" ASC) FILTER(WHERE
            "t30"."end_date" IS NOT NULL) AS "end_date",
          NULLIF(
            FIRST(
              COALESCE("t30"."concept_id", -9223372036854775807) ORDER BY "t30"."start_date" ASC, "t30"."record_id" ASC
            ) FILTER(WHERE
              COALESCE("t30"."concept_id", -9223372036854775807) IS NOT NULL),
            -9223372036854775807
          ) AS "concept_id",
          NULLIF(
            FIRST(
              COALESCE("t30"."source_concept_id", -9223372036854775807) ORDER BY "t30"."start_date" ASC, "t30"."record_id" ASC
            ) FILTER(WHERE
              COALESCE("t30"."source_concept_id", -9223372036854775807) IS NOT NULL),
            -9223372036854775807
          ) AS "source_concept_id",
          NULLIF(
            FIRST(
              COALESCE("t30"."visit_occurrence_id", -9223372036854775807) ORDER BY "t30"."start_date" ASC, "t30"."record_id" ASC
            ) FILTER(WHERE
              COALESCE("t30"."visit_occurrence_id", -9223372036854775807) IS NOT NULL),
            -9223372036854775807
          ) AS "visit_occurrence_id"
        FROM (
          SELECT
            *
          FROM (
            SELECT
              "t2"."person_id",
              "t2"."drug_exposure_id" AS "record_id",
              "t2"."drug_exposure_start_date" AS "start_date",
              COALESCE(
                "t2"."drug_exposure_end_date",
                CAST(CAST("t2"."drug_exposure_start_date" + TO_DAYS(CAST("t2"."days_supply" AS INT)) AS TIMESTAMP) AS DATE),
                CAST(CAST("t2"."drug_exposure_start_date" + INTERVAL '1' DAY AS TIMESTAMP) AS DATE)
              ) AS "end_date",
              "t2"."drug_concept_id" AS "concept_id",
              "t2"."drug_source_concept_id" AS "source_concept_id",
              "t2"."visit_occurrence_id",
              1 AS "_use"
            FROM "drug_exposure" AS "t2"
          ) AS "t19"
          WHERE
            "t19"."concept_id" IN (
              SELECT
                *
              FROM "t27"
            )
        ) AS "t30"
        GROUP BY
          1
      ) AS "t33"
    ) AS "t35"
    INNER JOIN (
      SELECT
        "t5"."person_id" AS "op_person_id",
        "t5"."observation_period_start_date" AS "op_start",
        "t5"."observation_period_end_date" AS "op_end",
        2 AS "_use"
      FROM "observation_period" AS "t5"
    ) AS "t13"
      ON "t35"."person_id" = "t13"."op_person_id"
      AND "t35"."start_date" >= "t13"."op_start"
      AND "t35"."start_date" <= "t13"."op_end"
  ) AS "t36"
  WHERE
    DATE_DIFF('DAY', "t36"."op_start", "t36"."start_date") >= 365
), "cohort_f7cb8ce4_rule_1" AS (
  SELECT
    "t39"."person_id",
    "t39"."event_id",
    "t39"."start_date",
    "t39"."end_date",
    "t39"."op_start",
    "t39"."op_end",
    "t39"."visit_occurrence_id"
  FROM "cohort_f7cb8ce4_entry_events" AS "t39"
  SEMI JOIN (
    SELECT
      "t1"."person_id",
      "t1"."year_of_birth",
      "t1"."gender_concept_id",
      3 AS "_use"
    FROM "person" AS "t1"
  ) AS "t8"
    ON "t39"."person_id" = "t8"."person_id"
    AND (
      EXTRACT(year FROM "t39"."start_date") - "t8"."year_of_birth"
    ) >= 18.0
    AND (
      EXTRACT(year FROM "t39"."start_date") - "t8"."year_of_birth"
    ) <= 60.0
), "cohort_f7cb8ce4_rule_2" AS (
  SELECT
    "t43"."person_id",
    "t43"."event_id",
    "t43"."start_date",
    "t43"."end_date",
    "t43"."op_start",
    "t43"."op_end",
    "t43"."visit_occurrence_id"
  FROM (
    SELECT
      "t41"."person_id",
      "t41"."event_id",
      "t41"."start_date",
      "t41"."end_date",
      "t41"."op_start",
      "t41"."op_end",
      "t41"."visit_occurrence_id",
      "t41"."start_date" AS "_sw_hi"
    FROM "cohort_f7cb8ce4_rule_1" AS "t41"
  ) AS "t43"
  SEMI JOIN (
    SELECT
      "t29"."person_id" AS "a_person_id",
      "t29"."record_id" AS "a_record_id",
      "t29"."start_date" AS "a_start_date",
      "t29"."end_date" AS "a_end_date",
      "t29"."concept_id" AS "a_concept_id",
      "t29"."visit_occurrence_id" AS "a_visit_occurrence_id"
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
          4 AS "_use"
        FROM "condition_occurrence" AS "t0"
      ) AS "t16"
      WHERE
        "t16"."concept_id" IN (
          SELECT
            *
          FROM "cohort_f7cb8ce4_cs0_ms" AS "t24"
        )
    ) AS "t29"
  ) AS "t32"
    ON "t43"."person_id" = "t32"."a_person_id"
    AND "t32"."a_start_date" >= "t43"."op_start"
    AND "t32"."a_start_date" <= "t43"."op_end"
    AND "t32"."a_start_date" <= "t43"."_sw_hi"
)
SELECT
  "t60"."person_id" AS "subject_id",
  "t60"."start_date" AS "cohort_start_date",
  "t60"."cohort_end" AS "cohort_end_date"
FROM (
  SELECT
    "t59".*
    EXCLUDE ("era_end")
  FROM (
    SELECT
      "t58"."person_id",
      "t58"."event_id",
      "t58"."start_date",
      "t58"."end_date",
      "t58"."op_start",
      "t58"."op_end",
      "t58"."visit_occurrence_id",
      "t58"."era_end",
      LEAST(
        COALESCE("t58"."era_end", "t58"."op_end"),
        COALESCE("t58"."op_end", "t58"."era_end")
      ) AS "cohort_end"
    FROM (
      SELECT
        "t46"."person_id",
        "t46"."event_id",
        "t46"."start_date",
        "t46"."end_date",
        "t46"."op_start",
        "t46"."op_end",
        "t46"."visit_occurrence_id",
        "t57"."era_end"
      FROM "cohort_f7cb8ce4_rule_2" AS "t46"
      LEFT OUTER JOIN (
        SELECT
          "t55"."person_id" AS "k_person_id",
          "t55"."event_id" AS "k_event_id",
          MIN("t55"."era_end") AS "era_end"
        FROM (
          SELECT
            "t46"."person_id",
            "t46"."event_id",
            "t46"."start_date",
            "t46"."end_date",
            "t46"."op_start",
            "t46"."op_end",
            "t46"."visit_occurrence_id",
            "t54"."person_id" AS "person_id_right",
            "t54"."era_start",
            "t54"."era_end"
          FROM "cohort_f7cb8ce4_rule_2" AS "t46"
          INNER JOIN (
            SELECT
              "t52"."person_id",
              "t52"."era_start",
              CAST(CAST("t52"."padded_end" + INTERVAL '-90' DAY AS TIMESTAMP) AS DATE) AS "era_end"
            FROM (
              SELECT
                "t51"."person_id",
                "t51"."era",
                MIN("t51"."start") AS "era_start",
                MAX("t51"."padded") AS "padded_end"
              FROM (
                SELECT
                  "t50"."person_id",
                  "t50"."start",
                  "t50"."padded",
                  "t50"."is_start",
                  SUM("t50"."is_start") OVER (
                    PARTITION BY "t50"."person_id"
                    ORDER BY "t50"."start" ASC, "t50"."padded" ASC
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                  ) AS "era"
                FROM (
                  SELECT
                    "t49"."person_id",
                    "t49"."start",
                    "t49"."padded",
                    CASE
                      WHEN MAX("t49"."padded") OVER (
                        PARTITION BY "t49"."person_id"
                        ORDER BY "t49"."start" ASC, "t49"."padded" ASC
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 preceding
                      ) >= "t49"."start"
                      THEN 0
                      ELSE 1
                    END AS "is_start"
                  FROM (
                    SELECT
                      "t48"."person_id",
                      "t48"."start",
                      CAST(CAST(COALESCE(
                        "t48"."end",
                        CAST(CAST("t48"."start" + TO_DAYS("t48"."days_supply") AS TIMESTAMP) AS DATE),
                        CAST(CAST("t48"."start" + INTERVAL '1' DAY AS TIMESTAMP) AS DATE)
                      ) + INTERVAL '90' DAY AS TIMESTAMP) AS DATE) AS "padded"
                    FROM (
                      SELECT
                        *
                      FROM (
                        SELECT
                          "t2"."person_id",
                          "t2"."drug_concept_id" AS "concept_id",
                          "t2"."drug_source_concept_id" AS "source_concept_id",
                          "t2"."drug_exposure_start_date" AS "start",
                          "t2"."drug_exposure_end_date" AS "end",
                          CAST("t2"."days_supply" AS INT) AS "days_supply",
                          5 AS "_use"
                        FROM "drug_exposure" AS "t2"
                      ) AS "t9"
                      WHERE
                        (
                          "t9"."concept_id" IN (
                            SELECT
                              *
                            FROM "t27"
                          )
                          OR "t9"."source_concept_id" IN (
                            SELECT
                              *
                            FROM "t27"
                          )
                        )
                        AND "t9"."person_id" IN (
                          SELECT
                            "t45"."person_id"
                          FROM "cohort_f7cb8ce4_rule_2" AS "t45"
                        )
                    ) AS "t48"
                  ) AS "t49"
                ) AS "t50"
              ) AS "t51"
              GROUP BY
                1,
                2
            ) AS "t52"
          ) AS "t54"
            ON "t46"."person_id" = "t54"."person_id"
            AND "t46"."start_date" >= "t54"."era_start"
            AND "t46"."start_date" <= "t54"."era_end"
        ) AS "t55"
        GROUP BY
          1,
          2
      ) AS "t57"
        ON "t46"."person_id" = "t57"."k_person_id" AND "t46"."event_id" = "t57"."k_event_id"
    ) AS "t58"
  ) AS "t59"
) AS "t60"
WHERE
  "t60"."cohort_end" IS NOT NULL
