WITH "cohort_7de8a3d6_cs2_high_efficacy_dmt" AS (
  SELECT DISTINCT
    *
  FROM (
    SELECT
      *
    FROM (
      SELECT
        "t2"."concept_id"
      FROM "concept" AS "t2"
      WHERE
        "t2"."concept_id" IN (2000000303)
    ) AS "t9"
    UNION
    SELECT
      *
    FROM (
      SELECT
        "t15"."descendant_concept_id" AS "concept_id"
      FROM (
        SELECT
          *
        FROM "concept_ancestor" AS "t3"
        WHERE
          "t3"."ancestor_concept_id" IN (2000000303)
          AND "t3"."descendant_concept_id" IN (
            SELECT
              "t2"."concept_id"
            FROM "concept" AS "t2"
            WHERE
              "t2"."invalid_reason" IS NULL
          )
      ) AS "t15"
    ) AS "t19"
  ) AS "t24"
), "cohort_7de8a3d6_cs0_ms" AS (
  SELECT DISTINCT
    *
  FROM (
    SELECT
      *
    FROM (
      SELECT
        "t2"."concept_id"
      FROM "concept" AS "t2"
      WHERE
        "t2"."concept_id" IN (374919)
    ) AS "t10"
    UNION
    SELECT
      *
    FROM (
      SELECT
        "t16"."descendant_concept_id" AS "concept_id"
      FROM (
        SELECT
          *
        FROM "concept_ancestor" AS "t3"
        WHERE
          "t3"."ancestor_concept_id" IN (374919)
          AND "t3"."descendant_concept_id" IN (
            SELECT
              "t2"."concept_id"
            FROM "concept" AS "t2"
            WHERE
              "t2"."invalid_reason" IS NULL
          )
      ) AS "t16"
    ) AS "t20"
  ) AS "t25"
), "cohort_7de8a3d6_cs1_platform_dmt" AS (
  SELECT DISTINCT
    *
  FROM (
    SELECT
      *
    FROM (
      SELECT
        "t2"."concept_id"
      FROM "concept" AS "t2"
      WHERE
        "t2"."concept_id" IN (2000000302)
    ) AS "t11"
    UNION
    SELECT
      *
    FROM (
      SELECT
        "t17"."descendant_concept_id" AS "concept_id"
      FROM (
        SELECT
          *
        FROM "concept_ancestor" AS "t3"
        WHERE
          "t3"."ancestor_concept_id" IN (2000000302)
          AND "t3"."descendant_concept_id" IN (
            SELECT
              "t2"."concept_id"
            FROM "concept" AS "t2"
            WHERE
              "t2"."invalid_reason" IS NULL
          )
      ) AS "t17"
    ) AS "t21"
  ) AS "t26"
), "t35" AS (
  SELECT
    *
  FROM "cohort_7de8a3d6_cs1_platform_dmt" AS "t32"
), "cohort_7de8a3d6_entry_events" AS (
  SELECT
    "t47"."person_id",
    1 AS "event_id",
    "t47"."start_date",
    "t47"."end_date",
    "t47"."op_start",
    "t47"."op_end",
    "t47"."visit_occurrence_id"
  FROM (
    SELECT
      "t46"."person_id",
      "t46"."record_id",
      "t46"."start_date",
      "t46"."end_date",
      "t46"."concept_id",
      "t46"."visit_occurrence_id",
      "t46"."criterion",
      "t14"."op_person_id",
      "t14"."op_start",
      "t14"."op_end",
      "t14"."_use"
    FROM (
      SELECT
        "t44"."person_id",
        "t44"."record_id",
        "t44"."start_date",
        "t44"."end_date",
        "t44"."concept_id",
        "t44"."visit_occurrence_id",
        0 AS "criterion"
      FROM (
        SELECT
          "t39"."person_id",
          MIN("t39"."start_date") AS "start_date",
          NULLIF(
            FIRST(
              COALESCE("t39"."record_id", -9223372036854775807) ORDER BY "t39"."start_date" ASC, "t39"."record_id" ASC
            ),
            -9223372036854775807
          ) AS "record_id",
          FIRST("t39"."end_date" ORDER BY "t39"."start_date" ASC, "t39"."record_id" ASC) AS "end_date",
          NULLIF(
            FIRST(
              COALESCE("t39"."concept_id", -9223372036854775807) ORDER BY "t39"."start_date" ASC, "t39"."record_id" ASC
            ),
            -9223372036854775807
          ) AS "concept_id",
          NULLIF(
            FIRST(
              COALESCE("t39"."source_concept_id", -9223372036854775807) ORDER BY "t39"."start_date" ASC, "t39"."record_id" ASC
            ),
            -9223372036854775807
          ) AS "source_concept_id",
          NULLIF(
            FIRST(
              COALESCE("t39"."visit_occurrence_id", -9223372036854775807) ORDER BY "t39"."start_date" ASC, "t39"."record_id" ASC
            ),
            -9223372036854775807
          ) AS "visit_occurrence_id"
        FROM (
          SELECT
            *
          FROM (
            SELECT
              "t0"."person_id",
              "t0"."drug_exposure_id" AS "record_id",
              "t0"."drug_exposure_start_date" AS "start_date",
              COALESCE(
                "t0"."drug_exposure_end_date",
                CAST(CAST("t0"."drug_exposure_start_date" + MAKE_INTERVAL(days => CAST(CAST("t0"."days_supply" AS INT) AS INT)) AS TIMESTAMP) AS DATE),
                CAST(CAST("t0"."drug_exposure_start_date" + INTERVAL '1 DAY' AS TIMESTAMP) AS DATE)
              ) AS "end_date",
              "t0"."drug_concept_id" AS "concept_id",
              "t0"."drug_source_concept_id" AS "source_concept_id",
              "t0"."visit_occurrence_id",
              1 AS "_use"
            FROM "drug_exposure" AS "t0"
          ) AS "t23"
          WHERE
            "t23"."concept_id" IN (
              SELECT
                *
              FROM "t35"
            )
        ) AS "t39"
        GROUP BY
          1
      ) AS "t44"
    ) AS "t46"
    INNER JOIN (
      SELECT
        "t5"."person_id" AS "op_person_id",
        "t5"."observation_period_start_date" AS "op_start",
        "t5"."observation_period_end_date" AS "op_end",
        2 AS "_use"
      FROM "observation_period" AS "t5"
    ) AS "t14"
      ON "t46"."person_id" = "t14"."op_person_id"
      AND "t46"."start_date" >= "t14"."op_start"
      AND "t46"."start_date" <= "t14"."op_end"
  ) AS "t47"
  WHERE
    CAST(EXTRACT(epoch FROM CAST("t47"."start_date" AS TIMESTAMP) - CAST("t47"."op_start" AS TIMESTAMP)) / 86400 AS BIGINT) >= 365
), "cohort_7de8a3d6_rule_1" AS (
  SELECT
    "t50"."person_id",
    "t50"."event_id",
    "t50"."start_date",
    "t50"."end_date",
    "t50"."op_start",
    "t50"."op_end",
    "t50"."visit_occurrence_id"
  FROM "cohort_7de8a3d6_entry_events" AS "t50"
  WHERE
    EXISTS(
      SELECT
        1
      FROM (
        SELECT
          "t4"."person_id",
          "t4"."year_of_birth",
          "t4"."gender_concept_id",
          3 AS "_use"
        FROM "person" AS "t4"
      ) AS "t13"
      WHERE
        "t50"."person_id" = "t13"."person_id"
        AND (
          EXTRACT(year FROM "t50"."start_date") - "t13"."year_of_birth"
        ) >= 18.0
        AND (
          EXTRACT(year FROM "t50"."start_date") - "t13"."year_of_birth"
        ) <= 60.0
    )
), "cohort_7de8a3d6_rule_2" AS (
  SELECT
    "t54"."person_id",
    "t54"."event_id",
    "t54"."start_date",
    "t54"."end_date",
    "t54"."op_start",
    "t54"."op_end",
    "t54"."visit_occurrence_id"
  FROM (
    SELECT
      "t52"."person_id",
      "t52"."event_id",
      "t52"."start_date",
      "t52"."end_date",
      "t52"."op_start",
      "t52"."op_end",
      "t52"."visit_occurrence_id",
      "t52"."start_date" AS "_sw_hi"
    FROM "cohort_7de8a3d6_rule_1" AS "t52"
  ) AS "t54"
  WHERE
    EXISTS(
      SELECT
        1
      FROM (
        SELECT
          "t38"."person_id" AS "a_person_id",
          "t38"."record_id" AS "a_record_id",
          "t38"."start_date" AS "a_start_date",
          "t38"."end_date" AS "a_end_date",
          "t38"."concept_id" AS "a_concept_id",
          "t38"."visit_occurrence_id" AS "a_visit_occurrence_id"
        FROM (
          SELECT
            *
          FROM (
            SELECT
              "t1"."person_id",
              "t1"."condition_occurrence_id" AS "record_id",
              "t1"."condition_start_date" AS "start_date",
              COALESCE(
                "t1"."condition_end_date",
                CAST(CAST("t1"."condition_start_date" + INTERVAL '1 DAY' AS TIMESTAMP) AS DATE)
              ) AS "end_date",
              "t1"."condition_concept_id" AS "concept_id",
              "t1"."condition_source_concept_id" AS "source_concept_id",
              "t1"."visit_occurrence_id",
              4 AS "_use"
            FROM "condition_occurrence" AS "t1"
          ) AS "t18"
          WHERE
            "t18"."concept_id" IN (
              SELECT
                *
              FROM "cohort_7de8a3d6_cs0_ms" AS "t31"
            )
        ) AS "t38"
      ) AS "t43"
      WHERE
        "t54"."person_id" = "t43"."a_person_id"
        AND "t43"."a_start_date" >= "t54"."op_start"
        AND "t43"."a_start_date" <= "t54"."op_end"
        AND "t43"."a_start_date" <= "t54"."_sw_hi"
    )
), "cohort_7de8a3d6_rule_3" AS (
  SELECT
    "t58"."person_id",
    "t58"."event_id",
    "t58"."start_date",
    "t58"."end_date",
    "t58"."op_start",
    "t58"."op_end",
    "t58"."visit_occurrence_id"
  FROM (
    SELECT
      "t56"."person_id",
      "t56"."event_id",
      "t56"."start_date",
      "t56"."end_date",
      "t56"."op_start",
      "t56"."op_end",
      "t56"."visit_occurrence_id",
      CAST(CAST("t56"."start_date" + INTERVAL '-1 DAY' AS TIMESTAMP) AS DATE) AS "_sw_hi"
    FROM "cohort_7de8a3d6_rule_2" AS "t56"
  ) AS "t58"
  WHERE
    NOT EXISTS(
      SELECT
        1
      FROM (
        SELECT
          "t37"."person_id" AS "a_person_id",
          "t37"."record_id" AS "a_record_id",
          "t37"."start_date" AS "a_start_date",
          "t37"."end_date" AS "a_end_date",
          "t37"."concept_id" AS "a_concept_id",
          "t37"."visit_occurrence_id" AS "a_visit_occurrence_id"
        FROM (
          SELECT
            *
          FROM (
            SELECT
              "t0"."person_id",
              "t0"."drug_exposure_id" AS "record_id",
              "t0"."drug_exposure_start_date" AS "start_date",
              COALESCE(
                "t0"."drug_exposure_end_date",
                CAST(CAST("t0"."drug_exposure_start_date" + MAKE_INTERVAL(days => CAST(CAST("t0"."days_supply" AS INT) AS INT)) AS TIMESTAMP) AS DATE),
                CAST(CAST("t0"."drug_exposure_start_date" + INTERVAL '1 DAY' AS TIMESTAMP) AS DATE)
              ) AS "end_date",
              "t0"."drug_concept_id" AS "concept_id",
              "t0"."drug_source_concept_id" AS "source_concept_id",
              "t0"."visit_occurrence_id",
              5 AS "_use"
            FROM "drug_exposure" AS "t0"
          ) AS "t22"
          WHERE
            "t22"."concept_id" IN (
              SELECT
                *
              FROM "cohort_7de8a3d6_cs2_high_efficacy_dmt" AS "t30"
            )
        ) AS "t37"
      ) AS "t42"
      WHERE
        "t58"."person_id" = "t42"."a_person_id"
        AND "t42"."a_start_date" <= "t58"."_sw_hi"
    )
)
SELECT
  "t75"."person_id" AS "subject_id",
  "t75"."start_date" AS "cohort_start_date",
  "t75"."cohort_end" AS "cohort_end_date"
FROM (
  SELECT
    "t74"."person_id",
    "t74"."event_id",
    "t74"."start_date",
    "t74"."end_date",
    "t74"."op_start",
    "t74"."op_end",
    "t74"."visit_occurrence_id",
    "t74"."cohort_end"
  FROM (
    SELECT
      "t73"."person_id",
      "t73"."event_id",
      "t73"."start_date",
      "t73"."end_date",
      "t73"."op_start",
      "t73"."op_end",
      "t73"."visit_occurrence_id",
      "t73"."era_end",
      LEAST(
        COALESCE("t73"."era_end", "t73"."op_end"),
        COALESCE("t73"."op_end", "t73"."era_end")
      ) AS "cohort_end"
    FROM (
      SELECT
        "t61"."person_id",
        "t61"."event_id",
        "t61"."start_date",
        "t61"."end_date",
        "t61"."op_start",
        "t61"."op_end",
        "t61"."visit_occurrence_id",
        "t72"."era_end"
      FROM "cohort_7de8a3d6_rule_3" AS "t61"
      LEFT OUTER JOIN (
        SELECT
          "t70"."person_id" AS "k_person_id",
          "t70"."event_id" AS "k_event_id",
          MIN("t70"."era_end") AS "era_end"
        FROM (
          SELECT
            "t61"."person_id",
            "t61"."event_id",
            "t61"."start_date",
            "t61"."end_date",
            "t61"."op_start",
            "t61"."op_end",
            "t61"."visit_occurrence_id",
            "t69"."person_id" AS "person_id_right",
            "t69"."era_start",
            "t69"."era_end"
          FROM "cohort_7de8a3d6_rule_3" AS "t61"
          INNER JOIN (
            SELECT
              "t67"."person_id",
              "t67"."era_start",
              CAST(CAST("t67"."padded_end" + INTERVAL '-90 DAY' AS TIMESTAMP) AS DATE) AS "era_end"
            FROM (
              SELECT
                "t66"."person_id",
                "t66"."era",
                MIN("t66"."start") AS "era_start",
                MAX("t66"."padded") AS "padded_end"
              FROM (
                SELECT
                  "t65"."person_id",
                  "t65"."start",
                  "t65"."padded",
                  "t65"."is_start",
                  SUM("t65"."is_start") OVER (
                    PARTITION BY "t65"."person_id"
                    ORDER BY "t65"."start" ASC, "t65"."padded" ASC
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                  ) AS "era"
                FROM (
                  SELECT
                    "t64"."person_id",
                    "t64"."start",
                    "t64"."padded",
                    CASE
                      WHEN MAX("t64"."padded") OVER (
                        PARTITION BY "t64"."person_id"
                        ORDER BY "t64"."start" ASC, "t64"."padded" ASC
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 preceding
                      ) >= "t64"."start"
                      THEN 0
                      ELSE 1
                    END AS "is_start"
                  FROM (
                    SELECT
                      "t63"."person_id",
                      "t63"."start",
                      CAST(CAST(COALESCE(
                        "t63"."end",
                        CAST(CAST("t63"."start" + MAKE_INTERVAL(days => CAST("t63"."days_supply" AS INT)) AS TIMESTAMP) AS DATE),
                        CAST(CAST("t63"."start" + INTERVAL '1 DAY' AS TIMESTAMP) AS DATE)
                      ) + INTERVAL '90 DAY' AS TIMESTAMP) AS DATE) AS "padded"
                    FROM (
                      SELECT
                        *
                      FROM (
                        SELECT
                          "t0"."person_id",
                          "t0"."drug_concept_id" AS "concept_id",
                          "t0"."drug_source_concept_id" AS "source_concept_id",
                          "t0"."drug_exposure_start_date" AS "start",
                          "t0"."drug_exposure_end_date" AS "end",
                          CAST("t0"."days_supply" AS INT) AS "days_supply",
                          6 AS "_use"
                        FROM "drug_exposure" AS "t0"
                      ) AS "t8"
                      WHERE
                        (
                          "t8"."concept_id" IN (
                            SELECT
                              *
                            FROM "t35"
                          )
                          OR "t8"."source_concept_id" IN (
                            SELECT
                              *
                            FROM "t35"
                          )
                        )
                        AND "t8"."person_id" IN (
                          SELECT
                            "t60"."person_id"
                          FROM "cohort_7de8a3d6_rule_3" AS "t60"
                        )
                    ) AS "t63"
                  ) AS "t64"
                ) AS "t65"
              ) AS "t66"
              GROUP BY
                1,
                2
            ) AS "t67"
          ) AS "t69"
            ON "t61"."person_id" = "t69"."person_id"
            AND "t61"."start_date" >= "t69"."era_start"
            AND "t61"."start_date" <= "t69"."era_end"
        ) AS "t70"
        GROUP BY
          1,
          2
      ) AS "t72"
        ON "t61"."person_id" = "t72"."k_person_id" AND "t61"."event_id" = "t72"."k_event_id"
    ) AS "t73"
  ) AS "t74"
) AS "t75"
WHERE
  "t75"."cohort_end" IS NOT NULL
