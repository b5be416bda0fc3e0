-- One row per landed SRWR undertaker phase (record type 008): when the works on the street start
-- and end, and their traffic management. Times are Scottish wall time (no zone): the contract
-- does not document one.

select
    activity_id,
    phase_number,
    start_at,
    end_at,
    -- the published text, kept beside the parsed values
    start_date                                                    as start_date_published,
    start_time                                                    as start_time_published,
    end_date                                                      as end_date_published,
    end_time                                                      as end_time_published,
    -- inclusive calendar days on the street; null while the phase has no end
    case when end_at >= start_at
         then date_diff('day', cast(start_at as date), cast(end_at as date)) + 1 end
                                                                  as duration_days,
    traffic_management_type_code,
    footway,
    field_count,
    {{ block_month_lineage() }}

from {{ lake_source('srwr', 'undertaker_phases') }}
