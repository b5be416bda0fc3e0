-- No permit is both in progress and completed in the same month: the month's in-progress list and
-- completed list (the permits' status at each month's last event, int_permit_months, the lists
-- mart_works_by_month counts) never share a permit. The seed project's test of the same name joined
-- its two lists the same way; it guards against a month holding two rows of one permit.
{{ config(tags=['street_manager']) }}

with in_progress as (

    select permit_reference_number, _block_month, event_reference, event_time
    from {{ ref('int_permit_months') }}
    where work_status_ref = 'in_progress'

),

completed as (

    select permit_reference_number, _block_month, event_reference, event_time
    from {{ ref('int_permit_months') }}
    where work_status_ref = 'completed'

)

select
    in_progress.permit_reference_number,
    in_progress._block_month,
    in_progress.event_reference                                       as in_progress_event_reference,
    completed.event_reference                                         as completed_event_reference
from in_progress
join completed
    on completed.permit_reference_number = in_progress.permit_reference_number
    and completed._block_month = in_progress._block_month
